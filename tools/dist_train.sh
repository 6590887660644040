#!/usr/bin/env bash
# Distributed training: tools/dist_train.sh CONFIG PROCESSES_PER_MACHINE [tools/train.py ARGS...]
# One process per GPU; without GPUs the processes share the CPU cores (gloo backend).
# Environment, as mmdet's script: PORT (rendezvous port, default 29500); for several
# machines NNODES (default 1), NODE_RANK (0 .. NNODES-1, 0 on the master) and MASTER_ADDR
# (the master's address, default 127.0.0.1). Two machines with 8 GPUs each:
#   machine 0: NNODES=2 NODE_RANK=0 MASTER_ADDR=10.1.1.1 tools/dist_train.sh CONFIG 8
#   machine 1: NNODES=2 NODE_RANK=1 MASTER_ADDR=10.1.1.1 tools/dist_train.sh CONFIG 8
set -euo pipefail
if [ $# -lt 2 ] || ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py options...]" >&2
    echo "error: give the config and the number of processes (e.g. 2), in that order." >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/dist_common.sh"
exec "${TORCHRUN[@]}" "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
