#!/usr/bin/env bash
# Distributed testing: tools/dist_test.sh CONFIG CHECKPOINT PROCESSES_PER_MACHINE [ARGS...]
# One process per GPU; without GPUs the processes share the CPU cores (gloo backend).
# Environment as tools/dist_train.sh: PORT; NNODES, NODE_RANK, MASTER_ADDR for several
# machines (each runs the same command with its own NODE_RANK).
set -euo pipefail
if [ $# -lt 3 ] || ! [[ "$3" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [tools/test.py options...]" >&2
    echo "error: give the config, the checkpoint and the number of processes (e.g. 2)." >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/dist_common.sh"
exec "${TORCHRUN[@]}" "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
