#!/usr/bin/env bash
# Run the Keras/TensorFlow reference on the bundled tutorial and btc-usd datasets, one
# after the other (never in parallel: they would share the 2 cores and skew the timings).
# Usage: bash benchmarks/run_keras_reference.sh [--quick]
#   full:    100 epochs -> benchmarks/results/keras_<dataset>.json (TF's default threads) and
#            keras-intra1-inter2_<dataset>.json (intra-op 1, inter-op 2); summarise.py compares
#            coincast with the faster of the two
#   --quick: 3 epochs   -> the same names under benchmarks/results/quick/ (CI smoke run)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
BUNDLED="$ROOT/src/coincast/data/bundled"
EPOCHS=100
OUT="$HERE/results"
if [[ "${1:-}" == "--quick" ]]; then EPOCHS=3; OUT="$HERE/results/quick"; fi

bash "$HERE/setup_keras_env.sh"
PY="$HERE/.venv-keras/bin/python"
run() {  # dataset target
    "$PY" "$HERE/keras_reference.py" --data "$BUNDLED/$1.csv.gz" --target "$2" \
        --epochs "$EPOCHS" --seed 0 --verbose 0 --out "$OUT/keras_$1.json"
    "$PY" "$HERE/keras_reference.py" --data "$BUNDLED/$1.csv.gz" --target "$2" --intra-op 1 --inter-op 2 \
        --epochs "$EPOCHS" --seed 0 --verbose 0 --out "$OUT/keras-intra1-inter2_$1.json"
}
run tutorial "Bitcoin Price"
run btc-usd close
