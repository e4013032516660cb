"""No lost wake-up: a command (here a promotion by hand, as the API sends it) that arrives while
the service is in the middle of a step is run as soon as that step ends, not at the next candle
(a day later on a daily stream). The step is held open on an event; the clock runs at real
speed (one simulated second per second), so the next tick is a day away."""

import threading

import pandas as pd

from coincast.live import control
from coincast.live.clock import SimClock
from coincast.live.demo import GRACE, demo_service, run_demo
from coincast.live.service import Service
from tests.conftest import tiny

SETTINGS = dict(settings=tiny(window=20, model={"shrink": False}, train={"shards": 1}), retrain_every=1, shadow=5,
                head=False)


def test_a_command_sent_during_a_step_is_answered_when_the_step_ends(tmp_path, monkeypatch):
    store = tmp_path / "live.duckdb"
    run_demo(store, pd.Timestamp("2025-06-01", tz="UTC"), None, 2, threading.Event(), lambda line: None, **SETTINGS)

    inside, release, ended = threading.Event(), threading.Event(), threading.Event()
    real_step = Service.step

    def long_step(self, st):  # btc-1d's first step is held open until the test releases it
        if st.stream.name == "btc-1d" and not ended.is_set():
            inside.set()
            assert release.wait(120)
            real_step(self, st)
            ended.set()
            return
        real_step(self, st)

    monkeypatch.setattr(Service, "step", long_step)
    start = pd.Timestamp("2025-06-04", tz="UTC")
    clock = SimClock(start + GRACE, speed=1.0)
    stop, answered = threading.Event(), {}
    with demo_service(store, start, 1.0, None, lambda line: None, clock=clock, **SETTINGS) as (service, until):
        loop = threading.Thread(target=service.run, args=(stop,), daemon=True)
        loop.start()
        try:
            assert inside.wait(120)

            def promote():
                answered["after_step"] = ended.is_set()
                answered["passes"] = service.passes
                answered["now"] = clock.now()
                return control.promote(service, "btc-1d-m2", "ana", "looks better")

            caller = threading.Thread(target=lambda: answered.update(result=service.control.call(promote, timeout=30)))
            caller.start()
            while not service.control.wake.is_set():  # queued: the caller is waiting on the service
                caller.join(0.01)
            release.set()
            caller.join(60)
        finally:
            stop.set()
            loop.join(60)
    assert answered.get("result") == {"stream": "btc-1d", "champion": "btc-1d-m2", "retired": "btc-1d-m1"}, answered
    assert answered["after_step"] and answered["passes"] == 0  # right after the step, within the first pass
    assert answered["now"] < start + pd.Timedelta(days=1)  # long before the next candle
