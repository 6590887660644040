#!/usr/bin/env bash
# Training on a Slurm cluster, as OpenMMLab's slurm_train.sh:
#   [GPUS=16] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py ARGS...]
# srun starts GPUS tasks (one per GPU, GPUS_PER_NODE per machine); every task runs
# tools/train.py --launcher slurm, which takes its rank, the world size and the master
# address from Slurm's variables. GPUS_PER_NODE=0 runs CPU tasks (gloo), GPUS of them,
# TASKS_PER_NODE per machine (default 1).
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options...]" >&2
    echo "error: give the partition, a job name, the config and the work dir." >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/slurm_common.sh"
exec srun "${SRUN[@]}" "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --work-dir "$WORK_DIR" \
    --launcher slurm "${@:5}"
