"""`make load`'s scripts without their figures (times are never asserted): bad options are one
line and exit 2, and the load generator counts answers and errors against a real
`coincast serve --demo` process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import assert_user_error
from tests.serve_helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import load  # noqa: E402


@pytest.mark.parametrize("script, args, env, message", [
    ("load.py", ["--seconds", "0"], {}, "--seconds 0: give a time above 0"),
    ("load.py", ["--connections", "0"], {}, "--connections 0: give 1..256"),
    ("load.py", ["--seconds", "soon"], {}, "argument --seconds: invalid float value: 'soon'"),
    ("load_server.py", ["--days", "10"], {"COINCAST_TOKEN": "t"}, "--days 10: give 1050..1900"),
    ("load_server.py", ["--train-epochs", "0"], {"COINCAST_TOKEN": "t"}, "--train-epochs 0: give at least 1"),
    ("load_server.py", [], {}, "set COINCAST_TOKEN to the write token"),
])
def test_bad_options_are_one_line_exit_2_and_start_nothing(tmp_path, script, args, env, message):
    clean = {k: v for k, v in os.environ.items() if k != "COINCAST_TOKEN"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--folder", str(tmp_path / "load")],
                          capture_output=True, text=True, env={**clean, **env}, timeout=120)
    assert_user_error(done, message)
    assert not (tmp_path / "load").exists()


def test_the_load_generator_counts_answers_and_errors_against_a_real_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("COINCAST_TOKEN", "COINCAST_READ_TOKEN")}
    proc = subprocess.Popen([sys.executable, "-m", "coincast", "serve", "--demo", "--port", "0", "--speed", "0.1",
                             "--store", str(tmp_path / "live.duckdb")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        line = ""
        while "serving on" not in line:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
        url = re.search(r"(http://127\.0\.0\.1:\d+)/", line).group(1)
        with httpx.Client(base_url=url, timeout=30) as http:
            wait_for(lambda: http.get("/ready").status_code == 200, "/ready to answer 200", seconds=120)
        good = load.drive(url, ["/v1/streams/btc-1d/forecast"], 0.5, 4, proc.pid, warmup=0.2)
        bad = load.drive(url, ["/v1/streams/nope/forecast", "/v1/streams/btc-1d/forecast"], 0.5, 2, proc.pid, warmup=0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert good["requests"] > 0 and good["errors"] == 0
    assert good["mean_answer_bytes"] > 100 and set(good["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert good["training_seen"] and all(t is None for t in good["training_seen"])  # no training asked for
    assert bad["requests"] > 0 and 0 < bad["errors"] < bad["requests"]  # every other request is a 404
