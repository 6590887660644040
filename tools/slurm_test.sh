#!/usr/bin/env bash
# Testing on a Slurm cluster, as OpenMMLab's slurm_test.sh:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py ARGS...]
# The variables are tools/slurm_train.sh's.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options...]" >&2
    echo "error: give the partition, a job name, the config and the checkpoint." >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/slurm_common.sh"
exec srun "${SRUN[@]}" "$PYTHON" -u "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" \
    --launcher slurm "${@:5}"
