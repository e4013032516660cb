"""The live service's shrinkage towards persistence, fitted on the stream's live record (live/skill.py).

Real store, real registry, real service on the replay exchange: the a a forecast is served with
is `record_shrinkage` of the stream's scored champion forecasts whose targets open before it,
nothing later; a stream with fewer than MIN_RECORD of them serves persistence; a store made
before the `network`/`shrink` columns opens and gains them.
"""

import threading

import duckdb
import numpy as np
import pandas as pd
import pytest

from coincast import load
from coincast.data.store import Store
from coincast.live import skill
from coincast.live.demo import run_demo
from coincast.live.registry import Registry
from coincast.models.shrinkage import MIN_RECORD, record_shrinkage
from tests.conftest import tiny

DAY = pd.Timedelta(days=1)
MARKET = ("binance", "BTC/USDT", "1d")
START = pd.Timestamp("2025-06-01", tz="UTC")  # the service's first forecast
SEEDED = 40  # champion forecasts of an earlier run, scored, before START


def skilled_rows(closes: pd.Series, model: str, role: str, rng, move: float = 2.0) -> list[dict]:
    """Forecast rows for each candle of `closes` but the first: a network whose move is `move` times
    the real one plus noise (2: it overshoots, and a record of it shows skill with a near 0.5)."""
    rows = []
    for prev_t, t in zip(closes.index[:-1], closes.index[1:]):
        prev, actual = float(closes[prev_t]), float(closes[t])
        network = prev + move * (actual - prev) + rng.normal(0, 0.01 * prev)
        rows.append({"stream": "btc-1d", "model": model, "target_time": t, "issued_at": t + pd.Timedelta(minutes=1),
                     "data_through": prev_t, "role": role, "served": role == "champion", "point": network,
                     "lo80": None, "hi80": None, "lo95": None, "hi95": None, "persistence": prev,
                     "network": network, "shrink": 1.0})
    return rows


def seed(store: Store, end: pd.Timestamp, n: int) -> None:
    """Candles through the day before `end`, and `n` scored champion forecasts of an earlier model
    for the candles before `end` (as a store from an earlier run holds them)."""
    candles = load("btc-usd").loc[end - 1100 * DAY : end - DAY]  # as much history as the demo fetches
    store.upsert_candles(candles, *MARKET)
    reg = Registry(store)
    reg.issue(skilled_rows(candles["close"].iloc[-n - 1:], "btc-1d-m0", "champion", np.random.default_rng(0)))
    reg.realise("btc-1d", *MARKET, end)


def by_hand(forecasts: pd.DataFrame, target: pd.Timestamp) -> tuple[float, int]:
    """a from the stored rows, written out: the stream's scored champion rows with a network value,
    targets before `target`."""
    f = forecasts
    rows = f[(f["role"] == "champion") & f["network"].notna() & f["actual"].notna() & (f["target_time"] < target)]
    rows = rows.sort_values("target_time")
    return record_shrinkage(rows["actual"], rows["network"], rows["persistence"]), len(rows)


def stored(reg: Registry, stream: str = "btc-1d") -> pd.DataFrame:
    f = reg.forecasts(stream)
    f["target_time"] = pd.to_datetime(f["target_time"]).dt.tz_localize("UTC")
    return f


def test_record_a_uses_only_scored_champion_rows_before_the_target(tmp_path):
    closes = load("btc-usd")["close"].loc["2025-03-01":"2025-05-15"]  # 76 candles
    with Store(tmp_path / "live.duckdb") as store:
        store.upsert_candles(load("btc-usd").loc["2025-03-01":"2025-05-10"], *MARKET)  # the last 5 not closed yet
        reg = Registry(store)
        rng = np.random.default_rng(1)
        half = len(closes) // 2
        reg.issue(skilled_rows(closes.iloc[:half + 1], "btc-1d-m1", "champion", rng)
                  + skilled_rows(closes.iloc[half:], "btc-1d-m2", "champion", rng))  # a promotion half way
        # a challenger in shadow that foresees every move exactly: never part of the record
        reg.issue(skilled_rows(closes, "btc-1d-m3", "shadow", rng, move=1.0))
        reg.realise("btc-1d", *MARKET, pd.Timestamp("2025-05-11", tz="UTC"))
        f = stored(reg)
        target = closes.index[50]
        a, n = skill.record_a(reg, "btc-1d", target)
        assert (a, n) == pytest.approx(by_hand(f, target), rel=1e-12)
        assert n == 49 and 0.2 < a < 0.8  # a clear record: a moved off 0, below 1
        # no look-ahead: actuals from the target on do not change a; one before it does
        reg.con.execute("UPDATE forecasts SET actual = actual * 1.5 WHERE target_time >= ?", [target.tz_localize(None)])
        assert skill.record_a(reg, "btc-1d", target) == (a, n)
        reg.con.execute("UPDATE forecasts SET actual = actual * 1.5 WHERE target_time = ?",
                        [closes.index[30].tz_localize(None)])
        assert skill.record_a(reg, "btc-1d", target)[0] != a
        # unscored rows (their candle has not closed) are not part of it
        assert skill.record_a(reg, "btc-1d", closes.index[-1])[1] == len(closes) - 1 - 5
        # under MIN_RECORD scored forecasts: persistence
        assert skill.record_a(reg, "btc-1d", closes.index[MIN_RECORD]) == (0.0, MIN_RECORD - 1)
        assert skill.record_a(reg, "btc-1d", closes.index[MIN_RECORD + 1])[1] == MIN_RECORD


OLD_FORECASTS = """
CREATE TABLE forecasts (
    stream VARCHAR NOT NULL, model VARCHAR NOT NULL, target_time TIMESTAMP NOT NULL,
    issued_at TIMESTAMP NOT NULL, data_through TIMESTAMP NOT NULL, role VARCHAR NOT NULL,
    served BOOLEAN NOT NULL, point DOUBLE NOT NULL, lo80 DOUBLE, hi80 DOUBLE, lo95 DOUBLE, hi95 DOUBLE,
    persistence DOUBLE NOT NULL,
    actual DOUBLE, error DOUBLE, persistence_error DOUBLE, direction_hit BOOLEAN, realised_at TIMESTAMP,
    PRIMARY KEY (stream, model, target_time)
);
INSERT INTO forecasts VALUES ('btc-1d', 'btc-1d-m1', '2025-05-01', '2025-05-01 00:01', '2025-04-30', 'champion',
    true, 100.0, 90.0, 110.0, 80.0, 120.0, 99.0, 101.0, -1.0, -2.0, false, '2025-05-02 00:01');
"""


def test_a_store_made_before_the_network_column_opens_and_gains_it(tmp_path):
    path = tmp_path / "old.duckdb"
    with Store(path):
        pass
    con = duckdb.connect(str(path))
    con.execute(OLD_FORECASTS)
    con.close()
    with Store(path) as store:
        reg = Registry(store)
        cols = [c for (c,) in reg.con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'forecasts'")
                .fetchall()]
        assert cols[-4:] == ["network", "shrink", "final_actual", "revised_at"]
        old = reg.forecasts("btc-1d")
        assert len(old) == 1 and old["network"].isna().all() and old["shrink"].isna().all()
        assert skill.record_a(reg, "btc-1d", pd.Timestamp("2025-06-01", tz="UTC")) == (0.0, 0)  # no network value
        rows = skilled_rows(load("btc-usd")["close"].loc["2025-04-30":"2025-05-02"], "btc-1d-m1", "champion",
                            np.random.default_rng(2))
        assert reg.issue(rows) == 1  # 05-02 is new, 05-01 issued already (kept as it was)
        new = stored(reg).set_index("target_time")
        assert new.loc[pd.Timestamp("2025-05-01", tz="UTC"), "point"] == 100.0
        assert new.loc[pd.Timestamp("2025-05-02", tz="UTC"), "network"] == pytest.approx(rows[1]["network"])
    with Store(path) as store:  # opened again: the columns are not added twice
        Registry(store)


@pytest.fixture(scope="module")
def shrinking(tmp_path_factory):
    """The demo's two streams with shrinkage on, 9 days from START; btc-1d's store holds an earlier
    run's record (SEEDED scored champion forecasts with skill), eth-1d has none."""
    store_path = tmp_path_factory.mktemp("shrink") / "live.duckdb"
    with Store(store_path) as store:
        seed(store, START, SEEDED)
    lines = []
    run_demo(store=store_path, start=START, days=8, speed=None, stop=threading.Event(), log=lines.append,
             settings=tiny(window=20, model={"shrink": True}, train={"shards": 1}), retrain_every=7, shadow=3, guard=10,
             head=False)
    with Store(store_path) as store:
        reg = Registry(store)
        return stored(reg, "btc-1d"), stored(reg, "eth-1d"), lines


def test_served_forecasts_are_shrunk_with_the_a_of_the_earlier_record(shrinking):
    btc, _, lines = shrinking
    rows = btc[btc["model"] != "btc-1d-m0"]  # the service's own rows
    assert set(rows["target_time"]) == set(pd.date_range(START, START + 8 * DAY, freq="D"))
    assert set(rows["role"]) == {"champion", "shadow"}  # a challenger forecast in shadow too
    for r in rows.itertuples():
        a, n = by_hand(btc, r.target_time)
        assert r.shrink == pytest.approx(a, rel=1e-12, abs=1e-15)
        assert r.point == pytest.approx(r.persistence + a * (r.network - r.persistence), rel=1e-12)
        assert f"forecast for the {r.target_time:%Y-%m-%d %H:%M} candle's close" in "\n".join(lines)
        assert any(f"{r.model} [" in l and f"shrunk a {a:.3f} (live record of {n})" in l for l in lines)
    first = rows[rows["target_time"] == START].iloc[0]
    assert 0 < first.shrink < 1  # the earlier run's record shows skill: a off 0 from the first forecast
    assert (rows["point"] != rows["network"]).all() and (rows["point"] != rows["persistence"]).all()
    champion = rows[rows["role"] == "champion"].set_index("target_time")["shrink"]
    shadow = rows[rows["role"] == "shadow"].set_index("target_time")["shrink"]
    assert len(shadow) and (shadow == champion.loc[shadow.index]).all()  # the shadow gets the same a
    band = rows.dropna(subset=["lo80"])  # the conformal band is centred on the shrunk point
    assert np.allclose(band["point"] - band["lo80"], band["hi80"] - band["point"], rtol=1e-9)


def test_a_new_stream_serves_persistence_until_its_record_is_long_enough(shrinking):
    _, eth, lines = shrinking
    assert len(eth) == 9 + (eth["role"] == "shadow").sum()
    assert (eth["shrink"] == 0.0).all() and (eth["point"] == eth["persistence"]).all()
    assert eth["network"].notna().all() and (eth["network"] != eth["persistence"]).all()  # the network moved
    assert any("eth-1d" in l and "shrunk a 0.000 (live record of 0)" in l for l in lines)
