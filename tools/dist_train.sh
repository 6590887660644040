#!/usr/bin/env bash
# Distributed training on one machine: tools/dist_train.sh CONFIG NUM_PROCESSES [ARGS...]
# One process per GPU; without GPUs the processes share the CPU cores (gloo backend).
# PORT=29501 tools/dist_train.sh ... picks another rendezvous port (default 29500).
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
exec "$PYTHON" -m torch.distributed.run --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
