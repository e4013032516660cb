#!/usr/bin/env bash
# The package as a user gets it: build the sdist and wheel, install the wheel into a clean
# virtual environment (the CPU torch pinned first, as the Makefile does) and run coincast from a
# folder outside the source tree, so nothing can come from the checkout.
#
#   make wheel-check    (or: bash .ci/wheel_check.sh; $PYTHON builds, with `build` from the dev extra;
#                        $PYTHON3 makes the clean venv)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
TORCH=${TORCH:-torch==2.13.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS

"$PYTHON" -m build --outdir "$tmp/dist" . >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
wheel=$(ls "$tmp"/dist/coincast-*.whl)
ls "$tmp"/dist/coincast-*.tar.gz >/dev/null
# the wheel carries the bundled data, report templates, dashboard files, licences and py.typed
"$PYTHON" - "$wheel" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["coincast/py.typed", "coincast/data/bundled/btc-usd.csv.gz", "coincast/report/templates/run_report.html",
        "coincast/api/static/index.html", "coincast/api/static/vendor/uPlot.iife.min.js",
        "coincast/api/static/vendor/uPlot.LICENSE"]
missing = [n for n in need if n not in names] + ([] if any(n.endswith("licenses/LICENSE") for n in names) else ["LICENSE"])
if missing:
    sys.exit(f"the wheel lacks {missing}")
PY

${PYTHON3:-python3} -m venv "$tmp/venv"
pip_install() { "$tmp/venv/bin/python" -m pip install -q "$@" >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; exit 1; }; }
pip_install "$TORCH"
pip_install "$wheel"
mkdir "$tmp/work" && cd "$tmp/work"
env -u PYTHONPATH "$tmp/venv/bin/coincast" --version
env -u PYTHONPATH COLUMNS=200 "$tmp/venv/bin/coincast" datasets | grep -q "btc-usd .*3064"
env -u PYTHONPATH "$tmp/venv/bin/coincast" run --data btc-usd --epochs 1 --quiet --out "$tmp/runs" | tail -3
test -f "$(ls -d "$tmp"/runs/*/)report.html"
echo "wheel check passed in $((SECONDS - start)) s: $(basename "$wheel")"
