"""`coincast live` and `coincast models` from the command line: bad configs are one line and exit
2 with nothing written; the demo runs on the replay exchange and its registry can be listed."""

import json
import re

import duckdb
import pytest

from coincast.live.registry import models_dir
from tests.conftest import assert_user_error

GOOD = """
[[stream]]
name = "btc-1d"
data = "store:binance/BTC/USDT/1d"
retrain_every = 7
"""


def config(tmp_path, body: str, store: str | None = None) -> str:
    path = tmp_path / "live.toml"
    where = store or str(tmp_path / "live.duckdb")
    path.write_text(f'store = "{where}"\n' + body)
    return str(path)


@pytest.mark.parametrize("body, message", [
    (GOOD.replace("binance/", "binanse/"), "stream 'btc-1d': unknown exchange 'binanse': ccxt does not support it; did you mean binance"),
    (GOOD.replace("/1d", "/7m"), "stream 'btc-1d': binance does not offer timeframe '7m'; use one of"),
    (GOOD.replace("retrain_every = 7", "retrain_every = 0"),
     "stream 'btc-1d': retrain_every must be a whole number of candles, at least 1 (got 0)"),
    (GOOD + GOOD.replace("BTC/USDT", "ETH/USDT"), "stream name(s) btc-1d used twice: give every [[stream]] its own name"),
    (GOOD.replace("retrain_every", "retrain_evry"), "stream 'btc-1d': unknown key(s) retrain_evry; known are"),
    (GOOD + '[stream.settings.model]\nhiden = [4]\n', "unknown setting 'model.hiden'"),
    ("", "has no streams: add at least one [[stream]] table"),
    (GOOD + 'train_timeout = 600\n', "stream 'btc-1d': train_timeout must be a duration above zero, e.g. \"90min\""),
    (GOOD + '[service]\nexecutor = "slurm"\n', "[service] executor must be \"local\" or \"ray\" (got 'slurm')"),
    (GOOD + '[service]\nthreads_per_task = 0\n', "[service] threads_per_task must be a whole number, at least 1 (got 0)"),
    (GOOD + '[service]\nray_address = "auto"\n', "[service] ray_address needs executor = \"ray\" (or --executor ray)"),
    (GOOD + '[service]\nexecuter = "ray"\n', "[service]: unknown key(s) executer; known are executor, ray_address, threads_per_task"),
    ('service = "ray"\n' + GOOD, "service must be a table: write [service] then executor = \"ray\""),
    (GOOD + '[service]\nexecutor = "ray"\nray_address = "nowhere"\n', "Ray address must be auto or HOST:PORT (got 'nowhere')"),
    (GOOD + '[service]\nexecutor = "ray"\nray_address = "127.0.0.1:1"\n', "no Ray cluster answers at 127.0.0.1:1"),
    (GOOD + '[stream.risk]\nhead = "no"\n', "stream 'btc-1d': [stream.risk] head must be true or false (got 'no')"),
    (GOOD + '[stream.risk]\nhead_epochs = 0\n', "stream 'btc-1d': [stream.risk] head_epochs must be a whole number of epochs, at least 1"),
    (GOOD + '[stream.risk]\nheads = false\n', "stream 'btc-1d': unknown key(s) heads in [stream.risk]; known are head, head_epochs"),
    (GOOD + 'risk = 3\n', "stream 'btc-1d': risk must be a table, e.g. [stream.risk] then head = false"),
])
def test_bad_config_is_one_line_exit_2_and_nothing_written(cli, tmp_path, body, message):
    done = cli("live", "--config", config(tmp_path, body), cwd=tmp_path)
    assert_user_error(done, message)
    assert not (tmp_path / "live.duckdb").exists() and not models_dir(tmp_path / "live.duckdb").exists()


@pytest.mark.parametrize("command", ["live", "serve"])
@pytest.mark.parametrize("options, message", [
    (["--executor", "slurm"], "[service] executor must be \"local\" or \"ray\" (got 'slurm')"),
    (["--threads-per-task", "0"], "[service] threads_per_task must be a whole number, at least 1 (got 0)"),
    (["--ray-address", "auto"], "[service] ray_address needs executor = \"ray\" (or --executor ray)"),
    (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
])
def test_bad_executor_options_are_one_line_exit_2_and_nothing_written(cli, tmp_path, command, options, message):
    """The options override the config's [service] table and are checked as it is."""
    body = GOOD + '[service]\nexecutor = "local"\n'
    assert_user_error(cli(command, "--config", config(tmp_path, body), *options, cwd=tmp_path), message)
    assert_user_error(cli(command, "--demo", "--store", str(tmp_path / "live.duckdb"), *options, cwd=tmp_path), message)
    assert not (tmp_path / "live.duckdb").exists() and not models_dir(tmp_path / "live.duckdb").exists()


def test_unwritable_store_path_is_one_line_exit_2(cli, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("a file where the store's folder should be")
    done = cli("live", "--config", config(tmp_path, GOOD, str(blocker / "live.duckdb")), cwd=tmp_path)
    assert_user_error(done, f"store {blocker / 'live.duckdb'} cannot be written")


def test_live_needs_demo_or_config(cli, tmp_path):
    assert_user_error(cli("live", cwd=tmp_path), "give either --demo or --config live.toml")
    assert_user_error(cli("live", "--demo", "--log-format", "xml", cwd=tmp_path), "--log-format xml is not a format: give text or json")
    assert_user_error(cli("live", "--demo", "--from", "2019-01-01", cwd=tmp_path), "--from 2019-01-01 is outside the replayable days")


def test_demo_runs_and_models_commands_read_and_change_its_registry(cli, tmp_path):
    store = tmp_path / "demo" / "live.duckdb"
    done = cli("live", "--demo", "--speed", "0", "--days", "9", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "replay exchange on http://127.0.0.1:" in out
    assert "demo model: window 20, hidden [8, 8], 5 epochs" in out and "shrinkage on" in out
    assert "btc-1d   training btc-1d-m1 on 1100 candles through 2025-05-31 00:00 (first model)" in out
    assert "forecast for the 2025-06-01 00:00 candle's close" in out and "[serves]" in out and "[shadow]" in out
    assert "eth-1d   scored through 2025-06-01 00:00: champion eth-1d-m1" in out
    assert "btc-1d-m2 trained in" in out and "shadow for the next 7 candles" in out
    assert out.rstrip().splitlines()[-1].startswith("stopped cleanly")
    # the service's lines: a UTC timestamp and a level, then the service's clock, the stream, the event
    logged = [line for line in out.splitlines() if "btc-1d   " in line]
    assert logged and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ INFO    \[2025-06-\d\d 00:01\] btc-1d   ", line)
                          for line in logged), logged[:3]
    # while it runs, nothing points to `models ls`: the service holds the store's lock
    assert not any("models ls" in line for line in out.rstrip().splitlines()[:-1])
    assert "`coincast serve --demo` shows the same demo" in out
    listed = cli("models", "ls", "--store", str(store), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "btc-1d-m1" in listed.stdout and "eth-1d-m2" in listed.stdout and "champion" in listed.stdout
    shown = cli("models", "show", "btc-1d-m1", "--store", str(store), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "trained through 2025-05-31 00:00" in shown.stdout and '"q95"' in shown.stdout
    assert "first: the stream's first model" in shown.stdout
    assert_user_error(cli("models", "show", "btc-1d-m9", "--store", str(store), cwd=tmp_path), "no model 'btc-1d-m9' in")

    # by hand: promote the shadow, then roll back; who and why are recorded
    promoted = cli("models", "promote", "btc-1d-m2", "--reason", "looks better", "--by", "ana", "--store", str(store), cwd=tmp_path)
    assert promoted.returncode == 0, promoted.stderr
    assert "btc-1d-m2 is now the champion (retired btc-1d-m1)" in promoted.stdout
    assert_user_error(cli("models", "promote", "btc-1d-m2", "--reason", "x", "--store", str(store), cwd=tmp_path),
                      "model btc-1d-m2 is champion: only a shadow or retired model can be promoted")
    back = cli("models", "rollback", "btc-1d", "--reason", "too jumpy", "--by", "ana", "--store", str(store), cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert "btc-1d: btc-1d-m1 is the champion again (btc-1d-m2 retired)" in back.stdout
    assert_user_error(cli("models", "rollback", "eth-1d", "--reason", "x", "--store", str(store), cwd=tmp_path),
                      "eth-1d-m1 replaced no earlier champion of eth-1d: nothing to roll back to")
    shown = cli("models", "show", "btc-1d-m2", "--store", str(store), cwd=tmp_path)
    assert "manual_promotion: by ana: looks better" in shown.stdout and "rollback: by ana: too jumpy" in shown.stdout
    con = duckdb.connect(str(store), read_only=True)
    try:
        status = dict(con.execute("SELECT id, status FROM models WHERE stream = 'btc-1d'").fetchall())
    finally:
        con.close()
    assert status == {"btc-1d-m1": "champion", "btc-1d-m2": "retired"}

    # a champion whose files do not load fails its own stream only: the other keeps forecasting
    weights = models_dir(store) / "btc-1d-m1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    broken = cli("live", "--demo", "--speed", "0", "--days", "1", "--from", "2025-06-11", "--store", str(store), cwd=tmp_path)
    assert broken.returncode == 0, broken.stderr
    assert "btc-1d   FAILED: ModelFileError: " in broken.stdout and "model.safetensors is corrupt or truncated" in broken.stdout
    assert "eth-1d   forecast for the 2025-06-11 00:00 candle's close" in broken.stdout
    assert "btc-1d   forecast for" not in broken.stdout


def test_sigterm_stops_the_demo_cleanly_and_the_store_has_one_writer(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import duckdb

    store = tmp_path / "live.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "coincast", "live", "--demo", "--speed", "1", "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:  # wait for the first scored candle: a champion is forecasting
        lines.append(line)
        if "scored through" in line or time.monotonic() > deadline:
            break
    # one writer: a second process on the store while the service runs gets one line naming it
    second = subprocess.run([sys.executable, "-m", "coincast", "models", "ls", "--store", str(store)],
                            capture_output=True, text=True, timeout=60)
    assert_user_error(second, f"store {store} is in use by process {proc.pid}")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping after this step" in out and out.rstrip().splitlines()[-1].startswith("stopped cleanly")
    assert "Traceback" not in err
    con = duckdb.connect(str(store), read_only=True)  # closed properly: opens, with its forecasts
    try:
        assert con.execute("SELECT count(*) FROM forecasts WHERE actual IS NOT NULL").fetchone()[0] >= 1
    finally:
        con.close()


def test_log_format_json_writes_one_object_a_line(cli, tmp_path):
    done = cli("live", "--demo", "--speed", "0", "--days", "1", "--log-format", "json", "--store",
               str(tmp_path / "live.duckdb"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]  # every line parses
    assert all(set(r) == {"time", "level", "logger", "stream", "service_time", "message"} for r in records)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records)
    forecast = next(r for r in records if r["message"].startswith("forecast for the 2025-06-01 00:00 candle's close"))
    assert forecast["level"] == "info" and forecast["stream"] in ("btc-1d", "eth-1d")
    assert forecast["service_time"] == "2025-06-01T00:01:00+00:00" and forecast["logger"] == "coincast.live"
    assert records[-1]["message"].startswith("stopped cleanly") and records[-1]["logger"] == "coincast.cli"


def test_the_example_config_loads_with_the_live_loader(tmp_path, monkeypatch):
    from pathlib import Path

    from coincast.live.config import load_config

    monkeypatch.setenv("HOME", str(tmp_path))  # its store is under ~
    cfg = load_config(Path(__file__).parents[1] / "examples" / "live.toml")
    assert [s.data for s in cfg.streams] == ["store:binance/BTC/USDT/1d", "store:bybit/ETH/USDT/1h"]
    assert cfg.store == tmp_path / "coincast" / "live.duckdb"
    assert cfg.streams[1].train_timeout == "3h" and cfg.streams[1].settings.model.hidden == [32, 32]


def test_serve_log_format_json_writes_one_object_a_line(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "coincast", "serve", "--demo", "--port", "0", "--speed", "0.5",
                             "--days", "1", "--log-format", "json", "--store", str(tmp_path / "live.duckdb")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:  # up to the server's URL
        lines.append(line)
        if "serving on http://127.0.0.1:" in line or len(lines) > 100:
            break
    url = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", lines[-1]).group(1)
    for _ in range(600):  # the server answers: its signal handlers are in place
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                break
        except OSError:
            time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in lines + out.splitlines()]
    assert any(r["message"].startswith("serving on http://127.0.0.1:") for r in records)
    assert any(r["message"] == "SIGTERM: stopping after this step" for r in records)
    assert records[-1]["message"] == "stopped cleanly" and "Traceback" not in err
