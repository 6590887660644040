#!/usr/bin/env bash
# Distributed training on one machine: tools/dist_train.sh CONFIG NUM_PROCESSES [ARGS...]
# One process per GPU; without GPUs the processes share the CPU cores (gloo backend).
set -euo pipefail
CONFIG=$1
NPROC=$2
PORT=${PORT:-29500}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-"$ROOT/.venv/bin/python"}
[ -x "$PYTHON" ] || PYTHON=python
if ! "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    # Share the cores between the processes instead of oversubscribing them.
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))}
fi
exec "$PYTHON" -m torch.distributed.run --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
