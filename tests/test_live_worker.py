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

    def submit_then_kill(self, job):  # the real worker, killed right after it takes btc's challenger
        real_submit(self, job)
        if job["id"] == "btc-1d-m2":
            os.kill(self.proc.pid, signal.SIGKILL)

    monkeypatch.setattr(Worker, "submit", submit_then_kill)
    store, lines = tmp_path / "live.duckdb", []
    run_demo(store, pd.Timestamp("2025-06-01", tz="UTC"), None, 9, threading.Event(), lines.append,
             settings=tiny(window=20, model={"shrink": False}, train={"shards": 1}), shadow=3, guard=10)
    with duckdb.connect(str(store), read_only=True) as con:
        status = dict(con.execute("SELECT id, status FROM models").fetchall())
        failures = con.execute("SELECT model, reason FROM decisions WHERE kind = 'failure'").fetchall()
        served = con.execute("SELECT stream, model, count(*) FROM forecasts WHERE served GROUP BY ALL ORDER BY ALL").fetchall()
    assert failures == [("btc-1d-m2", "the training process died (exit code -9: killed or out of memory)")]
    assert status["btc-1d-m2"] == "failed" and status["btc-1d-m1"] == "champion"
    assert status["eth-1d-m2"] in ("shadow", "champion", "retired")  # the next job got a fresh worker
    assert ("btc-1d", "btc-1d-m1", 10) in served  # 06-01 .. 06-10: every candle, by the champion
    assert any("training btc-1d-m2 FAILED: the training process died" in line for line in lines)
