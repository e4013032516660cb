"""Kill the real commands anywhere, then run months on: `coincast live --demo --speed 0` (the live
service and its replay exchange in one process, on virtual time: each step takes as long as its
work and no simulated time passes while a model trains) and `coincast serve --demo` (the same
with the HTTP API, on a simulated clock), on one store, over six simulated months: four streams
(BTC, ETH, LTC and BNB daily), every FAULT_EVERY-th exchange request answered with a fault.

KILLS times the test starts one of them where the store left off and SIGKILLs it once it has
printed the k-th progress line of a seeded pseudo-random kind (a fetch, a scoring, a forecast,
the start or the end of a training, a decision), k seeded too, or after CAP lines if that
event is slow to come: a kill follows an event, never a sleep. After each kill, checks that do not depend on when it landed:

* the stored candles of each market are the replay's, each once, none skipped (duplicated,
  shuffled and empty pages notwithstanding);
* no two forecasts share (stream, model, target time); no forecast issued before the kill has
  changed in its issued fields;
* every champion and shadow has its files, whole, and loads; each stream has at most one
  champion, shadow and training, and a stream that had a champion keeps one;
* a training the kill interrupted is discarded at the next start (a failure recorded), never
  registered;
* the killed service leaves no training process behind.

Then a last run to the end of the six months, stopped by the command itself: the same checks,
and the service's resident memory flat: RSS is sampled as each forecast line arrives (an event,
not a time), and the median over the third quarter of the run is compared with the median over
its last quarter (after warm-up: models loaded, the store's caches filled; medians, so that a
sample taken during a fetch's or a forecast's short-lived allocations does not decide).
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
from functools import lru_cache
from pathlib import Path
from statistics import median

import duckdb
import numpy as np
import pandas as pd

from coincast.data import load
from coincast.data.store import Store
from coincast.live.registry import ISSUED, Registry
from coincast.models.forecaster import Forecaster
from tests.conftest import assert_user_error

START, END = pd.Timestamp("2025-06-01"), pd.Timestamp("2025-12-01")  # six simulated months
KILLS = 20
SERVE_EVERY = 4  # every 4th start is `coincast serve --demo`, the others `coincast live --demo`
EVENTS = {"fetched": 6, "scored": 6, "forecast for": 8, "training ": 2, "trained in": 2, "DECISION": 1}  # kind: most k
CAP = 40  # progress lines after which a run is killed anyway (an event that does not come soon)
MARKETS = {f"{c}-1d": (f"{c.upper()}/USDT", f"{c}-usd") for c in ("btc", "eth", "ltc", "bnb")}
FAULT_EVERY = 7  # every 7th request to the replay exchange answered with a fault: 500, empty page, duplicates, shuffled
LINES_S = 300  # the most seconds to wait for the next line: generous, and only ever a bound
RSS_TOLERANCE = 0.10


class Command:
    """A `coincast live|serve --demo` process and its progress lines, read as they come."""

    def __init__(self, kind: str, store: Path, day: pd.Timestamp, days: int | None = None):
        args = ["--demo", "--from", f"{day:%Y-%m-%d}", "--store", str(store), "--coins", ",".join(MARKETS).replace("-1d", ""),
                "--faults", str(FAULT_EVERY), "--no-risk-head"]  # the heads' trainings: not what this test soaks
        args += ["--speed", "0"] if kind == "live" else ["--port", "0", "--speed", "1"]
        args += ["--days", str(days)] if days else []
        env = {k: v for k, v in os.environ.items() if k not in ("COINCAST_TOKEN", "COINCAST_READ_TOKEN")}
        self.proc = subprocess.Popen([sys.executable, "-m", "coincast", kind, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env={**env, "PYTHONUNBUFFERED": "1"})
        self.seen: list[str] = []
        self._lines: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)  # it ended

    def lines(self):
        """Its output, line by line, until it ends (each wait bounded by LINES_S)."""
        while True:
            try:
                line = self._lines.get(timeout=LINES_S)
            except queue.Empty:
                raise AssertionError(f"no output for {LINES_S} s:\n" + "".join(self.seen[-20:])) from None
            if line is None:
                return
            self.seen.append(line)
            yield line

    def workers(self) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except OSError:
            return []

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(l for l in status.splitlines() if l.startswith("VmRSS:")).split()[1])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=LINES_S)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:  # a failed check: never leave it running
            self.proc.kill()
            self.proc.wait()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def snapshot(store: Path) -> dict:
    with duckdb.connect(str(store), read_only=True) as con:
        return {name: con.execute(f"SELECT * FROM {name}").df() for name in ("candles", "forecasts", "models", "decisions")}


@lru_cache
def replayed(dataset: str) -> pd.DataFrame:
    return load(dataset)


def check(t: dict, store: Path, before: dict | None, loaded: set) -> None:
    for stream, (symbol, dataset) in MARKETS.items():
        c = t["candles"][t["candles"]["symbol"] == symbol].sort_values("open_time")
        times = pd.DatetimeIndex(c["open_time"]).tz_localize("UTC")
        if not len(times):
            continue  # killed before its first fetch
        real = replayed(dataset).loc[times[0]:times[-1]]
        assert list(times) == list(real.index), f"{stream}: a candle lost or stored twice"
        for col in ("open", "high", "low", "close", "volume"):
            np.testing.assert_allclose(c[col].to_numpy(), real[col].to_numpy(), rtol=1e-12)
    f = t["forecasts"]
    key = ["stream", "model", "target_time"]
    assert not f.duplicated(key).any()
    if before is not None and len(before["forecasts"]):
        old = before["forecasts"][ISSUED].set_index(key).sort_index()
        pd.testing.assert_frame_equal(f[ISSUED].set_index(key).sort_index().loc[old.index], old)  # issued fields never change
    m = t["models"].set_index("id")
    with Store(store, read_only=True) as db:
        reg = Registry(db, create=False)
        for model_id in m.index[m["status"].isin(["champion", "shadow", "retired"])]:
            folder = reg.folder(model_id)
            assert (folder / "model.safetensors").is_file() and (folder / "model.json").is_file(), model_id
            if model_id not in loaded and m.loc[model_id, "status"] != "retired":
                Forecaster.load(folder)  # whole: it loads
                loaded.add(model_id)
    counts = m.groupby("stream")["status"].value_counts().unstack(fill_value=0)
    for status in ("training", "champion", "shadow"):
        assert status not in counts or (counts[status] <= 1).all(), counts
    if before is not None:
        b = before["models"]
        assert set(b.loc[b["status"] == "champion", "stream"]) <= set(m.loc[m["status"] == "champion", "stream"]), counts
        was = b.set_index("id")["status"]
        for model_id in was.index[was == "training"]:  # unfinished then: never registered later
            assert m.loc[model_id, "status"] in ("training", "discarded"), (model_id, m.loc[model_id, "status"])
    d = t["decisions"]
    for model_id in m.index[m["status"] == "discarded"]:
        assert ((d["model"] == model_id) & (d["kind"] == "failure")).sum() == 1, model_id


def resume_day(store: Path) -> pd.Timestamp:
    """Where the store left off: the day after its newest candle."""
    with duckdb.connect(str(store), read_only=True) as con:
        (newest,) = con.execute("SELECT max(open_time) FROM candles").fetchone()
    return pd.Timestamp(newest).normalize() + pd.Timedelta(days=1)


def test_killed_anywhere_twenty_times_then_six_months_on_loses_nothing(tmp_path):
    rng = random.Random(27)
    store = tmp_path / "live.duckdb"
    loaded: set = set()
    before, workers, day = None, [], START
    for kill in range(KILLS):
        kind = "serve" if kill % SERVE_EVERY == SERVE_EVERY - 1 else "live"
        event = "trained in" if kill == 0 else rng.choice(sorted(EVENTS))
        k = rng.randint(1, EVENTS[event])
        with Command(kind, store, day) as cmd:
            hits = 0
            for line in cmd.lines():
                hits += event in line
                workers += cmd.workers()
                if hits == k or len(cmd.seen) >= CAP:
                    break
            assert cmd.proc.poll() is None, "the service ended by itself:\n" + "".join(cmd.seen[-20:])
            cmd.kill()
        assert cmd.proc.returncode == -signal.SIGKILL
        state = snapshot(store)
        check(state, store, before, loaded)
        before, day = state, resume_day(store)
    assert day < END - pd.Timedelta(days=60), f"the kills used up the months: at {day:%Y-%m-%d}"

    # the rest of the six months in one run, which ends by itself; its memory sampled on events
    samples = []
    with Command("live", store, day, days=(END - day).days) as cmd:
        for line in cmd.lines():
            if "btc-1d" in line and "forecast for" in line and cmd.proc.poll() is None:
                try:
                    samples.append(cmd.rss_kb())
                except (OSError, StopIteration):
                    pass  # it just ended
        assert cmd.proc.wait(timeout=LINES_S) == 0, "".join(cmd.seen[-20:])
    assert "stopped cleanly" in cmd.seen[-1]
    end = snapshot(store)
    check(end, store, before, loaded)
    newest = pd.Timestamp(end["candles"]["open_time"].max())
    assert newest == END - pd.Timedelta(days=1), newest  # six months fetched, through the last day

    left = [w for w in workers if alive(w)]
    assert not left, f"a killed service left processes running: {left}"
    m, f = end["models"], end["forecasts"]
    for row in m[m["status"] == "discarded"].itertuples():  # redone: a later training of the stream finished
        later = m[(m["stream"] == row.stream) & (m["created"] >= row.created) & (m["id"] != row.id)]
        assert later["status"].isin(["shadow", "champion", "retired", "failed"]).any(), row.id
    for stream in MARKETS:  # forecast through the months: every day a forecast or a recorded miss
        served = set(pd.DatetimeIndex(f.loc[(f["stream"] == stream) & f["served"], "target_time"]))
        d = end["decisions"]
        missed = set(pd.DatetimeIndex(d.loc[(d["stream"] == stream) & d["kind"].isin(["missed", "stale", "no_forecast"]),
                                            "target_time"]))
        first = min(served)
        days = set(pd.date_range(first, END - pd.Timedelta(days=1), freq="D"))
        assert days <= served | missed, sorted(days - served - missed)[:3]

    quarter = len(samples) // 4
    assert quarter >= 5, samples
    mid, late = median(samples[2 * quarter:3 * quarter]), median(samples[3 * quarter:])
    assert abs(late / mid - 1) <= RSS_TOLERANCE, (mid, late, samples)


def test_bad_demo_options_are_one_line_exit_2_and_write_nothing(cli, tmp_path):
    for args, message in ((["--coins", "btc,doge"], "--coins btc,doge: give some of btc, eth, ltc, bnb"),
                          (["--coins", "btc,btc"], "each once"), (["--faults", "-1"], "--faults -1: give 0 (none) or N")):
        done = cli("live", "--demo", *args, "--store", str(tmp_path / "s" / "live.duckdb"), cwd=tmp_path)
        assert_user_error(done, message)
        assert not (tmp_path / "s").exists()
