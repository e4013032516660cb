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

import httpx
import pytest

from tests.conftest import assert_user_error
from tests.serve_helpers import wait_for

TOKEN = "proc-token"
ANA, VIEWER = "ana-token-0123", "viewer-token-0123"


@pytest.mark.parametrize("args, message", [
    (["--demo", "--host", "0.0.0.0"], "--host 0.0.0.0 would expose the API beyond this machine without a token: set COINCAST_TOKEN"),
    (["--demo", "--host", "example.org"], "--host example.org would expose the API beyond this machine"),
    (["--demo", "--token-file", "missing.txt"], "--token-file missing.txt cannot be read"),
    ([], "give either --demo or --config live.toml"),
    (["--demo", "--port", "70000"], "--port 70000 is not a port"),
    (["--demo", "--tokens", "missing.txt"], "--tokens missing.txt cannot be read"),
    (["--demo", "--tokens", "tokens"], "--tokens tokens line 2: write `name token`"),
    (["--demo", "--tokens", "short"], "--tokens short line 1: the token of ana is shorter than 8 characters"),
    (["--demo", "--tokens", "twice"], "the name of ana is given twice"),
    (["--demo", "--tokens", "empty"], "--tokens empty holds no token"),
    (["--demo", "--host", "0.0.0.0", "--tokens", "readers"], "--host 0.0.0.0 would expose the API"),
    (["--demo", "--coins", "btc,doge"], "--coins btc,doge: give some of btc, eth, ltc, bnb"),
    (["--demo", "--faults", "-3"], "--faults -3: give 0 (none) or N"),
])
def test_bad_invocations_are_one_line_exit_2_and_write_nothing(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("COINCAST_TOKEN", raising=False)
    for name, text in (("tokens", "ana 0123456789\nbob\n"), ("short", "ana 0123\n"), ("empty", "# none yet\n"),
                       ("twice", "ana 0123456789\nana 9876543210\n"), ("readers", "viewer 0123456789 read\n")):
        (tmp_path / name).write_text(text)
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


def test_a_real_server_process(tmp_path):
    token_file, tokens = tmp_path / "token", tmp_path / "tokens"
    token_file.write_text(TOKEN + "\n")
    tokens.write_text(f"ana {ANA}\nviewer {VIEWER} read\n")
    env = {k: v for k, v in os.environ.items() if k not in ("COINCAST_TOKEN", "COINCAST_READ_TOKEN")}
    proc = subprocess.Popen([sys.executable, "-m", "coincast", "serve", "--demo", "--port", "0", "--speed", "0.5",
                             "--token-file", str(token_file), "--tokens", str(tokens), "--store", str(tmp_path / "live.duckdb")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "serving on http://127.0.0.1:" in line or len(lines) > 50:
                break
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", "".join(lines))
        assert match, "".join(lines)
        assert "writes need a token, reads need a token" in lines[-1]
        with httpx.Client(base_url=match.group(1), timeout=30, headers={"Authorization": f"Bearer {VIEWER}"}) as http:
            assert http.get("/health").json() == {"status": "ok"}
            ready = wait_for(lambda: (r := http.get("/ready")).status_code == 200 and r, "/ready to answer 200", seconds=120)
            assert [s["name"] for s in ready.json()["streams"]] == ["btc-1d", "eth-1d"]
            assert http.get("/ready", headers={"Authorization": ""}).json() == {"ready": True}  # no token: no details
            assert http.get("/v1/streams", headers={"Authorization": ""}).status_code == 401
            assert http.get("/v1/streams", headers={"Authorization": f"Bearer {ANA}"}).status_code == 200
            latest = http.get("/v1/streams/btc-1d/forecast")
            assert latest.status_code == 200, latest.text
            assert {"target_time", "point", "lo80", "hi95", "persistence", "model", "issued_at", "data_through",
                    "fallback"} <= set(latest.json())
            assert http.get("/v1/streams/nope/forecast").status_code == 404
            url = "/v1/models/btc-1d-m1/promote"
            assert http.post(url, json={"reason": "x"}, headers={"Authorization": ""}).status_code == 401
            assert http.post(url, json={"reason": "x"}, headers={"Authorization": "Bearer wrong"}).status_code == 403
            assert http.post(url, json={"reason": "x"}).status_code == 403  # the viewer's token reads only
            for token in (TOKEN, ANA):
                right = http.post(url, json={"reason": "x"}, headers={"Authorization": f"Bearer {token}"})
                assert right.status_code == 409 and "btc-1d-m1 is champion" in right.json()["detail"]  # authorised, refused on merit
            assert http.post(url, content=b"{" + b" " * 70_000 + b"}", headers={"Authorization": f"Bearer {TOKEN}",
                             "Content-Type": "application/json"}).status_code == 413
            metrics = http.get("/metrics").text
            assert 'coincast_forecasts_issued_total{role="champion",stream="btc-1d"}' in metrics
            assert 'coincast_http_requests_total{method="POST",route="/v1/models/{model_id}/promote",status="401"} 1.0' in metrics
            assert 'coincast_http_requests_total{method="POST",route="/v1/models/{model_id}/promote",status="403"} 2.0' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping after this step" in out and out.rstrip().splitlines()[-1] == "stopped cleanly"
    assert "Traceback" not in err
