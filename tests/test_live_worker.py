"""The training worker, a real spawned process: a training that raises comes back as a failure
with its reason, a worker killed mid-training is reported as died, and the next job starts a
fresh worker that trains and writes a model that loads."""

import os
import signal
import time

from coincast import load
from coincast.live.worker import Worker
from coincast.models.forecaster import Forecaster
from tests.conftest import tiny


def job(model_id, staging, candles, model=None, epochs=1):
    settings = tiny(window=20, model=model, train={"shards": 1, "epochs": epochs, "early_stopping": False})
    return {"id": model_id, "settings": settings.to_dict(),
            "candles": candles, "init": None, "staging": str(staging)}


def test_failures_are_reported_and_a_killed_worker_is_replaced(tmp_path):
    candles = load("btc-usd").loc["2022-01-01":"2025-05-31"]
    worker = Worker(threads=1)
    try:
        worker.submit(job("bad", tmp_path / "bad", candles.iloc[:25]))  # 25 rows: too few windows
        failed = worker.wait()
        assert failed["ok"] is False and failed["id"] == "bad"
        assert "DataError: only" in failed["reason"] and "training windows" in failed["reason"]
        lower = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)  # nice +10, capped at 19
        assert os.getpriority(os.PRIO_PROCESS, worker.proc.pid) == lower

        # a training of many seconds, killed after 0.3 s
        worker.submit(job("killed", tmp_path / "killed", candles, model={"hidden": [64, 64]}, epochs=100))
        time.sleep(0.3)
        os.kill(worker.proc.pid, signal.SIGKILL)
        died = worker.wait()
        assert died == {"ok": False, "id": "killed",
                        "reason": "the training process died (exit code -9: killed or out of memory)"}
        assert not worker.busy

        worker.submit(job("good", tmp_path / "good", candles))
        done = worker.wait()
        assert done["ok"] is True and done["figures"]["candles"] == len(candles)
        assert 0 < done["figures"]["q80"] < done["figures"]["q95"]
        f = Forecaster.load(tmp_path / "good")
        assert f.forecast_next(candles)["date"] == "2025-06-01T00:00:00+00:00"
    finally:
        worker.stop()
    assert worker.proc is None


def test_a_killed_challenger_training_is_recorded_and_the_champion_keeps_serving(tmp_path, monkeypatch):
    import threading

    import duckdb
    import pandas as pd

    from coincast.live.demo import run_demo

    real_submit = Worker.submit

    def submit_then_kill(self, job, timeout_s=None):  # the real worker, killed right after it takes btc's challenger
        real_submit(self, job, timeout_s)
        if job["id"] == "btc-1d-m2":
            os.kill(self.proc.pid, signal.SIGKILL)

    monkeypatch.setattr(Worker, "submit", submit_then_kill)
    store, lines = tmp_path / "live.duckdb", []
    run_demo(store, pd.Timestamp("2025-06-01", tz="UTC"), None, 9, threading.Event(), lines.append,
             settings=tiny(window=20, model={"shrink": False}, train={"shards": 1}), shadow=3, guard=10, head=False)
    with duckdb.connect(str(store), read_only=True) as con:
        status = dict(con.execute("SELECT id, status FROM models").fetchall())
        failures = con.execute("SELECT model, reason FROM decisions WHERE kind = 'failure'").fetchall()
        served = con.execute("SELECT stream, model, count(*) FROM forecasts WHERE served GROUP BY ALL ORDER BY ALL").fetchall()
    assert failures == [("btc-1d-m2", "the training process died (exit code -9: killed or out of memory)")]
    assert status["btc-1d-m2"] == "failed" and status["btc-1d-m1"] == "champion"
    assert status["eth-1d-m2"] in ("shadow", "champion", "retired")  # the next job got a fresh worker
    assert ("btc-1d", "btc-1d-m1", 10) in served  # 06-01 .. 06-10: every candle, by the champion
    assert any("training btc-1d-m2 FAILED: the training process died" in line for line in lines)


def test_a_hung_training_is_ended_at_its_time_limit_and_the_next_one_runs(tmp_path):
    """A training that never returns: its warm start's model.json is a named pipe nobody writes,
    so the worker blocks reading it. The worker's clock is the test's: no real waiting."""
    candles = load("btc-usd").loc["2022-01-01":"2025-05-31"]
    hung = tmp_path / "hung-init"
    hung.mkdir()
    os.mkfifo(hung / "model.json")
    (hung / "model.safetensors").write_bytes(b"")
    now = [1000.0]
    worker = Worker(threads=1, clock=lambda: now[0])
    try:
        worker.submit({**job("hung", tmp_path / "hung", candles), "init": str(hung)}, timeout_s=600)
        assert worker.poll() is None and worker.busy  # training (blocked), inside its limit
        pid = worker.proc.pid
        now[0] += 601
        ended = worker.poll()
        assert ended == {"ok": False, "id": "hung", "reason": "the training did not finish within its time limit "
                         "of 10 min (train_timeout); its process was ended"}
        assert not worker.busy and worker.proc is None
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()

        worker.submit(job("next", tmp_path / "next", candles), timeout_s=600)  # a fresh worker trains the next
        done = worker.wait()
        assert done["ok"] is True and Forecaster.load(tmp_path / "next") is not None
    finally:
        worker.stop()


def test_the_service_records_a_timed_out_training_and_retrains_on_schedule(tmp_path):
    import threading

    import duckdb
    import pandas as pd

    from coincast.live.clock import SimClock
    from coincast.live.config import LiveConfig, Stream, StreamRisk, check
    from coincast.live.replay import Replay, ReplayExchange
    from coincast.live.service import Service
    from coincast.live.training import train_timeout

    class Stuck(Worker):
        """The real worker whose clock jumps a day ahead once a challenger is submitted: as if
        every challenger's training hung."""

        def __init__(self):
            self.jump = 0.0
            super().__init__(threads=1, clock=lambda: time.monotonic() + self.jump)

        def submit(self, job, timeout_s=None):
            super().submit(job, timeout_s)
            if job["id"] != "btc-1d-m1":
                self.jump += 86_400.0

    settings = tiny(window=20, model={"shrink": False}, train={"shards": 1})
    stream = Stream("btc-1d", "store:binance/BTC/USDT/1d", settings, "2022-06-01", 2, "warm", 3, 10, risk=StreamRisk(head=False))
    store, lines = tmp_path / "live.duckdb", []
    clock = SimClock(pd.Timestamp("2025-06-01 00:01", tz="UTC"))
    with ReplayExchange(Replay(clock, days_before_today=None)) as exchange:
        service = Service(check(LiveConfig([stream], store)), clock, lambda name: exchange.client(), lines.append,
                          grace=pd.Timedelta(minutes=1), hold="all", threads=1, fetch_backoff_s=0.01)
        service.worker = Stuck()
        service.run(threading.Event(), until=pd.Timestamp("2025-06-08", tz="UTC"))
    with duckdb.connect(str(store), read_only=True) as con:
        models = con.execute("SELECT id, status, trained_through FROM models ORDER BY created, id").df()
        failures = con.execute("SELECT model, reason FROM decisions WHERE kind = 'failure' ORDER BY id").df()
        served = con.execute("SELECT model, target_time FROM forecasts WHERE served ORDER BY target_time").df()
    limit = train_timeout(stream, 1096)
    assert list(models["status"]) == ["champion", "failed", "failed", "failed"]
    # on schedule: two candles after the data of the training before, failed or not
    assert list(models["trained_through"].dt.strftime("%m-%d")) == ["05-31", "06-02", "06-04", "06-06"]
    assert list(failures["model"]) == ["btc-1d-m2", "btc-1d-m3", "btc-1d-m4"]
    assert failures["reason"].str.startswith("the training did not finish within its time limit of").all()
    assert 600 < limit < 86_400  # the default: from the stream's size, above ten minutes
    assert (served["model"] == "btc-1d-m1").all() and len(served) == 7  # the champion served every candle
    assert any("training btc-1d-m2 FAILED: the training did not finish" in line for line in lines)
