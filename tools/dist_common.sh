# Shared by dist_train.sh and dist_test.sh (sourced; expects ROOT and NPROC).
# The environment variables are mmdet's: NNODES, NODE_RANK, MASTER_ADDR, PORT.
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PORT=${PORT:-29500}
PYTHON=${PYTHON:-"$ROOT/.venv/bin/python"}
[ -x "$PYTHON" ] || PYTHON=python
if ! [[ "$NNODES" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: NNODES=$NNODES is not a number of machines (1, 2, ...)." >&2
    exit 2
fi
if ! [[ "$NODE_RANK" =~ ^[0-9]+$ ]] || [ "$NODE_RANK" -ge "$NNODES" ]; then
    echo "error: NODE_RANK=$NODE_RANK must be 0 .. $((NNODES - 1)) (this machine's index" \
         "among NNODES=$NNODES; 0 on the MASTER_ADDR machine)." >&2
    exit 2
fi
if ! [[ "$PORT" =~ ^[0-9]+$ ]] || [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
    echo "error: PORT=$PORT is not a TCP port (1-65535)." >&2
    exit 2
fi
# The rendezvous port is opened on the master machine (node 0) only; torchrun's own message
# for a busy port is a long EADDRINUSE traceback.
if [ "$NODE_RANK" = 0 ] && ! "$PYTHON" - "$PORT" <<'PY'
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(('', int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PY
then
    echo "error: port $PORT is in use (another distributed run?). Pick a free one, e.g." \
         "PORT=$((PORT + 1)) $0 ..." >&2
    exit 2
fi
if ! "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    # Share the cores between the processes instead of oversubscribing them.
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))}
fi
# torchrun with a static rendezvous at MASTER_ADDR:PORT; every machine runs the same command
# with its own NODE_RANK.
TORCHRUN=("$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK"
          --master_addr="$MASTER_ADDR" --master_port="$PORT" --nproc_per_node="$NPROC")
