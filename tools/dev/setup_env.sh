#!/usr/bin/env bash
# One-command environment for emo_mm: `make setup` runs this.
#
# Creates .venv in the repository root and installs the pinned OpenMMLab 2.x stack
# (requirements/*.txt; the upstream breakages it works around are listed below and in
# emo_mm/compat/__init__.py) plus emo_mm in editable mode. The mobile runtime
# (requirements/mobile.txt, the `mobile` extra) is opt-in: EMO_MM_MOBILE=1 adds it;
# `tools/setup_env.sh --mobile-only` adds it to an existing .venv (`make setup-mobile`).
# Idempotent: every step checks what is already there.
#
# mmcv 2.1.0 has no wheels on PyPI, so it is compiled from the sdist. The compiled wheel is
# cached outside the repository, keyed by the exact torch build and the ops flavour:
#   ${EMO_MM_CACHE:-~/.cache/emo_mm}/mmcv/mmcv-2.1.0__torch-<torch version>__ops-<cpu|cuda>/
# so a fresh clone on the same machine installs in minutes. CUDA ops are built when nvcc is
# on PATH and torch sees a GPU (override with EMO_MM_MMCV_CUDA=0/1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
CACHE="${EMO_MM_CACHE:-$HOME/.cache/emo_mm}"
MMCV_VERSION=2.1.0
CONSTRAINTS="$ROOT/requirements/constraints.txt"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
# This machine's pip config lists local file indexes that lack most projects; pip warns about
# each one. Hide that noise, keep everything else and pip's exit status.
quiet_pip() {
    local out rc=0
    out="$("$PY" -m pip --disable-pip-version-check "$@" 2>&1)" || rc=$?
    printf '%s\n' "$out" | grep -v "is ignored: it is neither a file nor a directory" | grep -v '^$' || true
    return "$rc"
}
pip_install() { quiet_pip install -q -c "$CONSTRAINTS" "$@"; }

# The mobile runtime (ExecuTorch with XNNPACK: emo_mm/deploy/mobile.py, the tests marked
# `mobile`): 25 packages under the same constraints; none of the stack's pins changes.
install_mobile() {
    log "mobile runtime (ExecuTorch, requirements/mobile.txt)"
    pip_install -r requirements/mobile.txt
    # The runtime loads (its import logs a torch deprecation warning, hidden unless it fails).
    local out
    out="$("$PY" -c 'from importlib.metadata import version
from executorch.runtime import Runtime  # noqa: F401
print(version("executorch"))' 2>&1)" || { printf '%s\n' "$out" >&2; return 1; }
    log "ok: executorch ${out##*$'\n'}"
}

if [ "${1:-}" = --mobile-only ]; then
    if [ ! -x "$PY" ]; then
        echo "error: $VENV does not exist; run make setup first (make setup-mobile does)." >&2
        exit 1
    fi
    install_mobile
    exit 0
elif [ -n "${1:-}" ]; then
    echo "error: unknown argument $1 (the only one is --mobile-only)." >&2
    exit 2
fi

if ! command -v "$PYTHON" >/dev/null; then
    echo "error: $PYTHON not found. The pinned torch wheels need CPython 3.11; set PYTHON=/path/to/python3.11." >&2
    exit 1
fi

if [ ! -x "$PY" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

log "build tools"
pip_install -r requirements/build.txt
log "torch"
pip_install -r requirements/torch.txt

TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__)')"
if [ -n "${EMO_MM_MMCV_CUDA:-}" ]; then
    WITH_CUDA="$EMO_MM_MMCV_CUDA"
elif command -v nvcc >/dev/null && "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    WITH_CUDA=1
else
    WITH_CUDA=0
fi
FLAVOUR=$([ "$WITH_CUDA" = 1 ] && echo cuda || echo cpu)

mmcv_ok() {
    # The installed mmcv must be the pinned version, built for this torch and flavour.
    [ -f "$VENV/.mmcv-build-key" ] && [ "$(cat "$VENV/.mmcv-build-key")" = "$1" ] \
        && "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null
}

KEY="mmcv-${MMCV_VERSION}__torch-${TORCH_VERSION}__ops-${FLAVOUR}"
WHEEL_DIR="$CACHE/mmcv/$KEY"
if mmcv_ok "$KEY"; then
    log "mmcv $MMCV_VERSION already installed ($KEY)"
else
    if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
        log "building mmcv $MMCV_VERSION with compiled ops ($FLAVOUR) for torch $TORCH_VERSION; takes ~12 min on 2 cores"
        WORK="$(mktemp -d)"
        trap 'rm -rf "$WORK"' EXIT
        quiet_pip download -q --no-deps --no-binary :all: --no-build-isolation \
            "mmcv==$MMCV_VERSION" -d "$WORK"
        tar -xzf "$WORK/mmcv-$MMCV_VERSION.tar.gz" -C "$WORK"
        SRC="$WORK/mmcv-$MMCV_VERSION"
        # torch >= 2.14 headers need C++20; mmcv's setup.py hard-codes -std=c++17 after CXXFLAGS.
        sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
        (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA="$WITH_CUDA" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            quiet_pip wheel -q --no-deps --no-build-isolation --no-cache-dir . -w "$WORK/dist")
        # Debug info makes the wheel 32 MB instead of 1.4 MB; it is not needed at run time.
        "$PY" -m wheel unpack "$WORK"/dist/mmcv-*.whl -d "$WORK/unpacked" >/dev/null
        find "$WORK/unpacked" -name '*.so' -exec strip --strip-debug {} +
        mkdir -p "$WORK/stripped"
        "$PY" -m wheel pack "$WORK"/unpacked/mmcv-* -d "$WORK/stripped" >/dev/null
        mkdir -p "$CACHE/mmcv"
        rm -rf "$WHEEL_DIR.tmp" && mkdir -p "$WHEEL_DIR.tmp"
        cp "$WORK"/stripped/mmcv-*.whl "$WHEEL_DIR.tmp/"
        rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.tmp" "$WHEEL_DIR"   # publish atomically
    fi
    log "installing cached mmcv wheel from $WHEEL_DIR"
    pip_install --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
    echo "$KEY" > "$VENV/.mmcv-build-key"
fi

log "OpenMMLab toolboxes and test tools"
pip_install -r requirements/runtime.txt -r requirements/tests.txt -r requirements/lint.txt
if [ "${EMO_MM_MOBILE:-0}" = 1 ]; then
    install_mobile
fi
log "emo_mm (editable)"
pip_install --no-deps --no-build-isolation -e .

"$PY" - <<'PYCHECK'
import importlib
for name in ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmaction', 'mmpretrain', 'emo_mm'):
    importlib.import_module(name)
from mmcv.ops import nms  # noqa: F401  compiled ops present
import emo_mm
print('[setup] ok: emo_mm', emo_mm.__version__)
PYCHECK
