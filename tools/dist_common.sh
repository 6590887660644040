# Shared by dist_train.sh and dist_test.sh (sourced; expects ROOT and NPROC).
PORT=${PORT:-29500}
PYTHON=${PYTHON:-"$ROOT/.venv/bin/python"}
[ -x "$PYTHON" ] || PYTHON=python
# torchrun's own message for a busy port is a long EADDRINUSE traceback.
if ! "$PYTHON" - "$PORT" <<'PY'
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(('127.0.0.1', int(sys.argv[1])))
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
