#!/usr/bin/env bash
# Distributed testing on one machine: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [ARGS...]
# One process per GPU; without GPUs the processes share the CPU cores (gloo backend).
# PORT=29501 tools/dist_test.sh ... picks another rendezvous port (default 29500).
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
exec "$PYTHON" -m torch.distributed.run --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
