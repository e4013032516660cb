"""Kill anywhere: the live service runs as a process of its own (tests/live_kill_child.py) on
the replay exchange (127.0.0.1, in this process) with a shared simulated clock at one day per
half second, two streams, a tiny model retrained every 3 candles. It is killed with SIGKILL
20 times at random points (right after or shortly after a fetch, a forecast, a scoring, the
start or the end of a training, a decision), restarted each time, and after each kill:

* the stored candles are exactly the replay's closed candles, each once, none skipped;
* no two forecasts share (stream, model, target time), and no forecast issued before an
  earlier kill has changed in its issued fields;
* every champion's and shadow's files exist and load;
* a training the kill interrupted is never registered afterwards: the next start discards it
  (a failure recorded) and a later training replaces it;
* the killed service leaves no training process behind.
"""

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from coincast.live.clock import SimClock
from coincast.live.registry import ISSUED
from coincast.live.replay import Replay, ReplayExchange
from coincast.models.forecaster import Forecaster
from tests import live_kill_child
from tests.conftest import tiny

UTC = "UTC"
SPEED = 86_400 / 0.5  # simulated seconds per real second: a day every half second
KILLS = 20
EVENTS = ["started", "fetched", "scored", "forecast for", "training ", "trained in", "missed"]
SYMBOLS = {"btc-1d": "BTCUSDT", "eth-1d": "ETHUSDT"}


class Child:
    """The service process (forked from a server that has imported coincast) and its progress lines."""

    def __init__(self, args: dict):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(live_kill_child.PRELOAD)
        self.conn, sender = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=live_kill_child.serve, args=(args, sender), name="coincast-live-test")
        self.proc.start()
        sender.close()
        self.seen: list[str] = []

    def wait_for(self, text: str, timeout: float) -> bool:
        """Read lines until one holds `text` (every part of it, parts separated by |)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if not self.conn.poll(max(0.0, end - time.monotonic())):
                    return False
                line = self.conn.recv()
            except (EOFError, OSError):
                raise AssertionError("the service ended by itself:\n" + "\n".join(self.seen)) from None
            self.seen.append(line)
            if all(part in line for part in text.split("|")):
                return True
        return False

    def kill(self, sig: int) -> int:
        """Send `sig`, wait for the process to end, return its exit code."""
        os.kill(self.proc.pid, sig)
        self.proc.join(timeout=20)
        return self.proc.exitcode

    def end(self) -> int:
        """Wait for it to end by itself (after SIGTERM); its exit code."""
        self.proc.join(timeout=20)
        return self.proc.exitcode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.is_alive():  # a failed check: never leave the service running
            self.proc.kill()
            self.proc.join()

    def workers(self) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except OSError:
            return []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def snapshot(store: Path) -> dict:
    with duckdb.connect(str(store), read_only=True) as con:
        return {name: con.execute(f"SELECT * FROM {name}").df() for name in ("candles", "forecasts", "models", "decisions")}


def check(t: dict, replay: Replay, store: Path, before: dict | None, loaded: set) -> None:
    for stream, symbol_id in SYMBOLS.items():
        c = t["candles"][t["candles"]["symbol"] == f"{symbol_id[:3]}/USDT"].sort_values("open_time")
        times = pd.DatetimeIndex(c["open_time"]).tz_localize(UTC)
        if not len(times):
            continue  # killed before its first fetch
        assert times[0] == pd.Timestamp("2022-06-01", tz=UTC), stream
        real = replay.frame(symbol_id, "1d")
        expected = real.loc[times[0]:times[-1]]
        assert list(times) == list(expected.index), f"{stream}: a candle lost or duplicated"
        for col in ("open", "high", "low", "close", "volume"):
            np.testing.assert_allclose(c[col].to_numpy(), expected[col].to_numpy(), rtol=1e-12)
        assert times[-1] + pd.Timedelta(days=1) <= replay.clock.now()  # closed candles only
    f = t["forecasts"]
    assert not f.duplicated(["stream", "model", "target_time"]).any()
    if before is not None and len(before["forecasts"]):
        old = before["forecasts"][ISSUED].set_index(["stream", "model", "target_time"]).sort_index()
        now = f[ISSUED].set_index(["stream", "model", "target_time"]).sort_index().loc[old.index]
        pd.testing.assert_frame_equal(now, old)  # issued fields never change
    m = t["models"].set_index("id")
    for model_id in m.index[m["status"].isin(["champion", "shadow"])]:
        folder = store.parent / "models" / model_id
        assert (folder / "model.safetensors").exists() and (folder / "model.json").exists(), model_id
        if model_id not in loaded:
            Forecaster.load(folder)
            loaded.add(model_id)
    counts = m.groupby("stream")["status"].value_counts().unstack(fill_value=0)
    for status in ("training", "champion", "shadow"):  # at most one of each per stream, always
        assert status not in counts or (counts[status] <= 1).all(), counts
    if before is not None:  # a stream that had a champion keeps one (a promotion is never half done)
        had = set(before["models"].loc[before["models"]["status"] == "champion", "stream"])
        assert had <= set(m.loc[m["status"] == "champion", "stream"]), counts
    if before is not None:
        was = before["models"].set_index("id")["status"]
        for model_id in was.index[was == "training"]:  # unfinished then: never registered later
            assert m.loc[model_id, "status"] in ("training", "discarded"), (model_id, m.loc[model_id, "status"])
    for model_id in m.index[m["status"] == "discarded"]:
        d = t["decisions"]
        assert ((d["model"] == model_id) & (d["kind"] == "failure")).sum() == 1


def test_sigkill_anywhere_then_restart_loses_nothing(tmp_path):
    rng = random.Random(13)
    store = tmp_path / "live.duckdb"
    clock = SimClock(pd.Timestamp("2025-06-01 00:01", tz=UTC), SPEED)
    replay = Replay(clock, days_before_today=None)
    loaded: set = set()
    with ReplayExchange(replay) as exchange:
        args = {"store": str(store), "url": exchange.url, "start": str(clock.start), "speed": SPEED, "t0": clock.t0,
                "settings": tiny(window=20, model={"shrink": False}, train={"shards": 1}).to_dict(),
                "retrain_every": 3, "shadow": 2, "guard": 10}
        before = None
        workers: list[int] = []
        for kill in range(KILLS):
            with Child(args) as child:
                # the first kill comes right after the first model is registered; the others anywhere
                event = "trained in" if kill == 0 else rng.choice(EVENTS)
                child.wait_for(event, timeout=40 if kill == 0 else 3)  # (an event that does not come: killed anyway)
                time.sleep(rng.uniform(0, 0.15))
                workers += child.workers()
                assert child.kill(signal.SIGKILL) == -signal.SIGKILL
            state = snapshot(store) if store.exists() else None
            if state is not None:
                check(state, replay, store, before, loaded)
                before = state
        # a last run, stopped cleanly once both streams have trained a model since its start
        with Child(args) as child:
            for stream in SYMBOLS:
                assert child.wait_for(f"model {stream}-m| trained in ", timeout=40), "\n".join(child.seen)
            os.kill(child.proc.pid, signal.SIGTERM)
            assert child.wait_for("stopped cleanly", timeout=20) and child.end() == 0
        end = snapshot(store)
        deadline = time.monotonic() + 10  # (a worker killed while still starting notices once it runs)
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [Path(f"/proc/{w}/cmdline").read_text().replace("\0", " ") for w in workers if alive(w)]
        assert not left, f"a killed service left processes running: {left}"
        check(end, replay, store, before, loaded)
    m = end["models"]
    assert (m["status"] == "discarded").any(), "no kill hit a training: the test proved nothing about them"
    for row in m[m["status"] == "discarded"].itertuples():  # redone: a later training of the stream finished
        later = m[(m["stream"] == row.stream) & (m["created"] >= row.created) & (m["id"] != row.id)]
        assert later["status"].isin(["shadow", "champion", "retired", "failed"]).any(), row.id
    assert (end["forecasts"]["served"]).sum() > 10 and len(loaded) >= 3, "\n".join(child.seen)
