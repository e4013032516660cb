#!/usr/bin/env bash
# Create benchmarks/.venv-keras with the Keras/TensorFlow reference (idempotent).
# Re-running is a no-op unless requirements-keras.txt changed since the last install.
# Usage: bash benchmarks/setup_keras_env.sh   (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-keras"
REQ="$HERE/requirements-keras.txt"
STAMP="$VENV/.installed"
PYTHON="${PYTHON:-python3}"

if [[ -f "$STAMP" ]] && cmp -s "$REQ" "$STAMP" && "$VENV/bin/python" -c "import importlib.metadata as m; m.version('tensorflow')" 2>/dev/null; then
    echo "keras env: up to date ($VENV)"
    exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r "$REQ"
"$VENV/bin/python" -c "import tensorflow as tf, keras; print('keras env: tensorflow', tf.__version__, 'keras', keras.__version__)"
cp "$REQ" "$STAMP"
