# Shared by slurm_train.sh and slurm_test.sh (sourced; expects ROOT, PARTITION, JOB_NAME).
# OpenMMLab's variables: GPUS (tasks in all), GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS.
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-"$ROOT/.venv/bin/python"}
[ -x "$PYTHON" ] || PYTHON=python
for name in GPUS CPUS_PER_TASK; do
    if ! [[ "${!name}" =~ ^[1-9][0-9]*$ ]]; then
        echo "error: $name=${!name} must be a positive number." >&2
        exit 2
    fi
done
if ! [[ "$GPUS_PER_NODE" =~ ^[0-9]+$ ]]; then
    echo "error: GPUS_PER_NODE=$GPUS_PER_NODE must be a number (0: CPU tasks)." >&2
    exit 2
fi
if ! command -v srun >/dev/null; then
    echo "error: srun not found: run this on a Slurm login node (or use tools/dist_train.sh" \
         "with NNODES/NODE_RANK/MASTER_ADDR on each machine)." >&2
    exit 2
fi
if [ "$GPUS_PER_NODE" = 0 ]; then
    TASKS_PER_NODE=${TASKS_PER_NODE:-1}
    RESOURCES=(--ntasks-per-node="$TASKS_PER_NODE")
else
    RESOURCES=(--gres=gpu:"$GPUS_PER_NODE" --ntasks-per-node="$GPUS_PER_NODE")
fi
# SRUN_ARGS is split on spaces on purpose: it holds several srun options.
# shellcheck disable=SC2206
SRUN=(-p "$PARTITION" --job-name="$JOB_NAME" --ntasks="$GPUS" "${RESOURCES[@]}"
      --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 $SRUN_ARGS)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
