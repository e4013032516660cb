#!/usr/bin/env bash
# The speed benchmark, both sides in one run on this machine, one process at a time:
# the Keras reference (its own venv) and coincast, on the tutorial data and btc-usd.
# Usage: bash benchmarks/run_bench.sh [--quick]     (make bench / make bench-quick)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="$ROOT/.venv/bin/python"
EPOCHS=100
OUT="$HERE/results"
if [[ "${1:-}" == "--quick" ]]; then EPOCHS=3; OUT="$HERE/results/quick"; fi
mkdir -p "$OUT"

bash "$HERE/run_keras_reference.sh" ${1:-}
for ds in tutorial btc-usd; do
    # the default fast path (bf16 where the CPU has it), then the fp32 path as the quality reference
    "$PY" "$HERE/bench.py" --data "$ds" --epochs "$EPOCHS" --keras "$OUT/keras_$ds.json" "$OUT/keras-intra1-inter2_$ds.json" --out "$OUT/coincast_$ds.json"
    "$PY" "$HERE/bench.py" --data "$ds" --epochs "$EPOCHS" --precision fp32 --out "$OUT/coincast-fp32_$ds.json"
done
if [[ "${1:-}" != "--quick" ]]; then
    "$PY" "$HERE/summarise.py" --results "$OUT" --doc "$ROOT/BENCHMARKS.md"
else
    "$PY" "$HERE/summarise.py" --results "$OUT" --doc "$OUT/BENCHMARKS.quick.md"
fi
