"""`coincast serve` as users run it: bad invocations are one line and exit 2 with nothing written;
a real `coincast serve --demo` process (uvicorn on 127.0.0.1, a free port) answers health, ready,
forecast, auth and metrics over HTTP, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import assert_user_error

TOKEN = "proc-token"


@pytest.mark.parametrize("args, message", [
    (["--demo", "--host", "0.0.0.0"], "--host 0.0.0.0 would expose the API beyond this machine without a token: set COINCAST_TOKEN"),
    (["--demo", "--host", "example.org"], "--host example.org would expose the API beyond this machine"),
    (["--demo", "--token-file", "missing.txt"], "--token-file missing.txt cannot be read"),
    ([], "give either --demo or --config live.toml"),
    (["--demo", "--port", "70000"], "--port 70000 is not a port"),
])
def test_bad_invocations_are_one_line_exit_2_and_write_nothing(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("COINCAST_TOKEN", raising=False)
    done = cli("serve", *args, "--store", str(tmp_path / "s" / "live.duckdb"), cwd=tmp_path)
    assert_user_error(done, message)
    assert not (tmp_path / "s").exists()


def test_a_busy_port_is_one_line(cli, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        done = cli("serve", "--demo", "--port", str(port), "--store", str(tmp_path / "live.duckdb"), cwd=tmp_path)
    finally:
        taken.close()
    assert_user_error(done, f"cannot listen on 127.0.0.1:{port}")


def wait_for(check, what: str, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_real_server_process(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("COINCAST_TOKEN", "COINCAST_READ_TOKEN")}
    proc = subprocess.Popen([sys.executable, "-m", "coincast", "serve", "--demo", "--port", "0", "--speed", "0.5",
                             "--token-file", str(token_file), "--store", str(tmp_path / "live.duckdb")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "serving on http://127.0.0.1:" in line or len(lines) > 50:
                break
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", "".join(lines))
        assert match, "".join(lines)
        with httpx.Client(base_url=match.group(1), timeout=30) as http:
            assert http.get("/health").json() == {"status": "ok"}
            ready = wait_for(lambda: (r := http.get("/ready")).status_code == 200 and r, "/ready to answer 200")
            assert [s["name"] for s in ready.json()["streams"]] == ["btc-1d", "eth-1d"]
            latest = http.get("/v1/streams/btc-1d/forecast")
            assert latest.status_code == 200, latest.text
            assert {"target_time", "point", "lo80", "hi95", "persistence", "model", "issued_at", "data_through",
                    "fallback"} <= set(latest.json())
            assert http.get("/v1/streams/nope/forecast").json()["streams"] == ["btc-1d", "eth-1d"]
            url = "/v1/models/btc-1d-m1/promote"
            assert http.post(url, json={"reason": "x"}).status_code == 401
            assert http.post(url, json={"reason": "x"}, headers={"Authorization": "Bearer wrong"}).status_code == 403
            right = http.post(url, json={"reason": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
            assert right.status_code == 409 and "btc-1d-m1 is champion" in right.json()["detail"]  # authorised, refused on merit
            assert http.post(url, content=b"{" + b" " * 70_000 + b"}", headers={"Authorization": f"Bearer {TOKEN}",
                             "Content-Type": "application/json"}).status_code == 413
            metrics = http.get("/metrics").text
            assert 'coincast_forecasts_issued_total{role="champion",stream="btc-1d"}' in metrics
            assert 'coincast_http_requests_total{method="POST",route="/v1/models/{model_id}/promote",status="401"} 1.0' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping after this step" in out and out.rstrip().splitlines()[-1] == "stopped cleanly"
    assert "Traceback" not in err
