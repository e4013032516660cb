"""The model registry: models, forecasts and decisions in the store, model files beside it.

Tables (in the candle store's DuckDB file; the live service is its one writer):

* `models`: one row per training: id, stream, created (when the training started, service
  time), trained_through (open time of the last candle it saw), settings and figures (JSON
  text), status (training / shadow / champion / retired / failed / discarded: a training
  the service stopped during, redone), shadow_from (first target
  it forecast in shadow), live (its rolling live record, JSON text, rewritten after each
  scoring) and node (the Ray node id its training ran on; NULL for the local worker and on
  rows from before the column existed).
* `forecasts`: append-only, keyed (stream, model, target_time); target_time is the open time
  of the forecast candle (it closes one bar later). Once issued a row never changes, except
  that its realised fields (actual, error, persistence_error, direction_hit, realised_at)
  are filled in once, when that candle closes. `network` is the network's own forecast before
  shrinkage and `shrink` the a the point was shrunk with (`live/skill.py`); both NULL on
  persistence's fallback rows and on rows issued before the columns existed. A candle the
  exchange revises after its forecast was scored keeps its first `actual` (and the errors
  computed on it); its newest close goes to `final_actual` with `revised_at`, and live
  records, shadow verdicts and the shrinkage a are computed on the final value.
* `risk_forecasts`: append-only, keyed (stream, model, risk, target_time): the distribution of
  the target candle's percent log return by the point model's risk model `risk` (`live/risk.py`:
  the served one, and GARCH-t beside it for the guard), issued with its point forecast: the
  quantiles at evaluation/risk.LEVELS (1..99% and 2.5/97.5%), the 80%/95% ranges in price, the
  5% VaR (a percent return), `previous` (the close it is a return from) and `served` (what the
  API shows). Only its realised fields (actual: the percent log return, crps, hit80, hit95,
  var5_breach, realised_at) are filled in, once, when the candle closes (on the first close
  seen, as `actual` above). Its queries are in live/risk_records.py (`RiskRecords`, a base
  class of `Registry`).
* `decisions`: promotions, rejections (a tie's reason starts "kept: tie"), fallbacks,
  failures (of a training: its model; of a stream's step: no model) and recoveries, revisions
  of scored candles, stale and missed candles, and promotions and rollbacks by hand
  (`coincast models promote|rollback`: who and why), each with its figures (JSON text) and a
  reason.

Model files live in a folder that belongs to the store alone, named after the store file
(`live.duckdb.models/` beside `live.duckdb`) and marked as the registry's by a MARKER file:
`<id>/` holds model.safetensors + model.json; a training writes `.tmp-<id>/` and the registry
renames it into place when it succeeds. The registry removes only folders it made there (named
after its own models), so files of anyone else beside the store are never touched. A store
made when models lived in `<store folder>/models/<id>/` is read where its files are; a writable
open moves each of its models' folders (and only those) into the store's own folder.
"""

from __future__ import annotations

import json
import math
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from coincast.data.store import Store, StoreError
from coincast.errors import ModelFileError
from coincast.evaluation.metrics import diebold_mariano
from coincast.live.risk_records import RiskRecords, naive

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id VARCHAR PRIMARY KEY, stream VARCHAR NOT NULL, created TIMESTAMP NOT NULL,
    trained_through TIMESTAMP NOT NULL, settings VARCHAR, figures VARCHAR, status VARCHAR NOT NULL,
    shadow_from TIMESTAMP, live VARCHAR
);
CREATE TABLE IF NOT EXISTS forecasts (
    stream VARCHAR NOT NULL, model VARCHAR NOT NULL, target_time TIMESTAMP NOT NULL,
    issued_at TIMESTAMP NOT NULL, data_through TIMESTAMP NOT NULL, role VARCHAR NOT NULL,
    served BOOLEAN NOT NULL, point DOUBLE NOT NULL, lo80 DOUBLE, hi80 DOUBLE, lo95 DOUBLE, hi95 DOUBLE,
    persistence DOUBLE NOT NULL,
    actual DOUBLE, error DOUBLE, persistence_error DOUBLE, direction_hit BOOLEAN, realised_at TIMESTAMP,
    network DOUBLE, shrink DOUBLE, final_actual DOUBLE, revised_at TIMESTAMP,
    PRIMARY KEY (stream, model, target_time)
);
-- stores made before the columns existed gain them (their rows keep NULL)
ALTER TABLE models ADD COLUMN IF NOT EXISTS node VARCHAR;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS network DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS shrink DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS final_actual DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS revised_at TIMESTAMP;
CREATE SEQUENCE IF NOT EXISTS decision_id;
CREATE TABLE IF NOT EXISTS decisions (
    id BIGINT PRIMARY KEY DEFAULT nextval('decision_id'), stream VARCHAR NOT NULL, decided_at TIMESTAMP NOT NULL,
    kind VARCHAR NOT NULL, model VARCHAR, other VARCHAR, target_time TIMESTAMP, figures VARCHAR, reason VARCHAR
);
CREATE TABLE IF NOT EXISTS risk_forecasts (
    stream VARCHAR NOT NULL, model VARCHAR NOT NULL, risk VARCHAR NOT NULL, target_time TIMESTAMP NOT NULL,
    issued_at TIMESTAMP NOT NULL, data_through TIMESTAMP NOT NULL, served BOOLEAN NOT NULL, previous DOUBLE NOT NULL,
    quantiles DOUBLE[] NOT NULL, lo80 DOUBLE, hi80 DOUBLE, lo95 DOUBLE, hi95 DOUBLE, var5 DOUBLE,
    actual DOUBLE, crps DOUBLE, hit80 BOOLEAN, hit95 BOOLEAN, var5_breach BOOLEAN, realised_at TIMESTAMP,
    PRIMARY KEY (stream, model, risk, target_time)
);
"""

ISSUED = ["stream", "model", "target_time", "issued_at", "data_through", "role", "served",
          "point", "lo80", "hi80", "lo95", "hi95", "persistence", "network", "shrink"]
REALISED = ["actual", "error", "persistence_error", "direction_hit", "realised_at"]
FINAL = "coalesce(final_actual, actual)"  # a forecast's realised value as the exchange last served it


MARKER = ".coincast-models"  # in the store's model folder: written by the registry, so the folder is its own
LEGACY = "models"  # where older stores kept their models: a folder beside the store, shared with anything else


def models_dir(store: str | Path) -> Path:
    """The folder of the store's model files: the store file's name + `.models`, beside it."""
    store = Path(store)
    return store.with_name(store.name + ".models")


def utc(t) -> pd.Timestamp | None:
    return None if t is None or pd.isna(t) else pd.Timestamp(t).tz_localize("UTC")


def record(errors: np.ndarray, persistence_errors: np.ndarray, hits: np.ndarray) -> dict:
    """A live record from realised rows: RMSE, its ratio to persistence's, DM p both ways, direction."""
    e, p = np.asarray(errors, float), np.asarray(persistence_errors, float)
    n = len(e)
    if n == 0:
        return {"n": 0}
    rmse, pers = float(np.sqrt(np.mean(e**2))), float(np.sqrt(np.mean(p**2)))
    better = diebold_mariano(e**2, p**2)[1] if n >= 2 else None  # p that the model beats persistence
    worse = diebold_mariano(p**2, e**2)[1] if n >= 2 else None  # p that persistence beats the model
    return {
        "n": n, "rmse": rmse, "persistence_rmse": pers, "rmse_ratio": rmse / pers if pers else None,
        "dm_p_better": better, "dm_p_worse": worse, "direction_accuracy": float(np.mean(hits)),
    }


class Registry(RiskRecords):
    """Models, forecasts and decisions of the live service, on an open writable store."""

    def __init__(self, store: Store, create: bool = True):
        self.store = store
        self.con = store.con.cursor()  # its own results: a half-read result of the store's never blocks ours
        if create:
            self.con.execute(SCHEMA)
        tables = {t for (t,) in self.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if not {"models", "forecasts", "decisions"} <= tables:
            raise StoreError(f"store {store.path} holds no live registry: run `coincast live` on it first")
        self.models_dir = models_dir(store.path)
        self.legacy_dir = store.path.parent / LEGACY
        if create:
            self._own_models_dir()

    def _own_models_dir(self) -> None:
        """Make the store's model folder with its marker, and move an older store's models into it."""
        fresh = not (self.models_dir / MARKER).exists()
        self.models_dir.mkdir(parents=True, exist_ok=True)
        if fresh and self.legacy_dir.is_dir():
            for name in (n for model_id in self._ids() for n in (model_id, f".tmp-{model_id}")):
                old = self.legacy_dir / name
                if old.is_dir() and not (self.models_dir / name).exists():
                    old.rename(self.models_dir / name)
        (self.models_dir / MARKER).write_text("model files of the live registry in the store beside this folder; "
                                              "the registry removes only folders named after its models\n")

    def _ids(self, where: str = "") -> list[str]:
        return [i for (i,) in self._run(f"SELECT id FROM models {where} ORDER BY id")]

    @contextmanager
    def transaction(self):
        """Statements that stand or fall together: a kill between them leaves none applied."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def _run(self, sql: str, args: list | None = None) -> list:
        """A statement run to completion (DuckDB wants every result read before the next statement)."""
        return self.con.execute(sql, args).fetchall() if args is not None else self.con.execute(sql).fetchall()

    # -- models --------------------------------------------------------------------------
    def folder(self, model_id: str) -> Path:
        """The model's files (an older store, not yet opened by the service: where it kept them)."""
        own = self.models_dir / model_id
        old = self.legacy_dir / model_id
        if not (self.models_dir / MARKER).exists() and not own.exists() and old.is_dir():
            return old
        return own

    def staging(self, model_id: str) -> Path:
        return self.models_dir / f".tmp-{model_id}"

    def new_model(self, stream: str, created: pd.Timestamp, trained_through: pd.Timestamp, settings: dict) -> str:
        """Register a training that starts now (status 'training'); returns its id."""
        (n,) = self.con.execute("SELECT count(*) FROM models WHERE stream = ?", [stream]).fetchone()
        model_id = f"{stream}-m{n + 1}"
        self._run("INSERT INTO models (id, stream, created, trained_through, settings, status) "
                         "VALUES (?, ?, ?, ?, ?, 'training')",
                         [model_id, stream, naive(created), naive(trained_through), dumps(settings)])
        return model_id

    def finish_model(self, model_id: str, figures: dict, status: str, node: str | None = None) -> None:
        """Move the trained files into place, then mark the model shadow or champion (`node`: the
        Ray node its training ran on)."""
        final, staged = self.folder(model_id), self.staging(model_id)
        if final.exists():
            shutil.rmtree(final)  # a leftover of an interrupted earlier attempt with this id
        staged.rename(final)
        self._run("UPDATE models SET figures = ?, status = ?, node = ? WHERE id = ?",
                         [dumps(figures), status, node, model_id])

    def set_status(self, model_id: str, status: str, shadow_from: pd.Timestamp | None = None) -> None:
        self._run("UPDATE models SET status = ?, shadow_from = coalesce(?, shadow_from) WHERE id = ?",
                         [status, naive(shadow_from), model_id])

    def models(self, stream: str | None = None) -> pd.DataFrame:
        where, args = ("WHERE stream = ?", [stream]) if stream else ("", [])
        return self.con.execute(f"SELECT * FROM models {where} ORDER BY stream, created, id", args).df()

    def with_status(self, stream: str, status: str) -> dict | None:
        """The stream's newest model with this status, as a dict, or None."""
        rows = self.con.execute("SELECT * FROM models WHERE stream = ? AND status = ? ORDER BY created DESC, id DESC "
                                "LIMIT 1", [stream, status]).df()
        return None if rows.empty else rows.iloc[0].to_dict()

    def discard_unfinished(self, at: pd.Timestamp) -> list[str]:
        """Trainings a stopped service left behind: marked discarded (so they are redone), stray files removed."""
        ids = [i for (i,) in self.con.execute("SELECT id FROM models WHERE status = 'training'").fetchall()]
        for model_id in ids:
            (stream,) = self.con.execute("SELECT stream FROM models WHERE id = ?", [model_id]).fetchone()
            with self.transaction():
                self._run("UPDATE models SET status = 'discarded' WHERE id = ?", [model_id])
                self.decide(stream, at, "failure", model_id, reason="the service stopped during this training; it is redone")
        if (self.models_dir / MARKER).exists():  # only in the store's own folder, only what it wrote there
            gone = set(self._ids("WHERE status IN ('failed', 'discarded')"))
            ours = gone | {f".tmp-{i}" for i in self._ids()}
            for path in self.models_dir.iterdir():
                if path.is_dir() and path.name in ours:
                    shutil.rmtree(path, ignore_errors=True)
        return ids

    def trained_through(self, stream: str) -> pd.Timestamp | None:
        """The newest data any of the stream's trainings saw (failed ones too; not discarded ones)."""
        (t,) = self._run("SELECT max(trained_through) FROM models WHERE stream = ? AND status <> 'discarded'", [stream])[0]
        return utc(t)

    def promotable(self, model_id: str) -> dict:
        """The model's row, if it can be made champion by hand (a shadow or retired model)."""
        row = self.model_row(model_id)
        if row["status"] not in ("shadow", "retired"):
            raise ModelFileError(f"model {model_id} is {row['status']}: only a shadow or retired model can be promoted")
        return row

    def previous_champion(self, stream: str) -> tuple[str, str]:
        """(the model the stream's champion replaced, the champion): what a rollback swaps."""
        champion = self.with_status(stream, "champion")
        if champion is None:
            raise ModelFileError(f"stream {stream!r} has no champion in {self.store.path}; `coincast models ls` lists the streams")
        rows = self.con.execute(
            "SELECT other FROM decisions WHERE stream = ? AND model = ? AND kind IN ('promotion', 'manual_promotion', "
            "'rollback') ORDER BY id DESC LIMIT 1", [stream, champion["id"]]).fetchall()
        previous = rows[0][0] if rows else None
        if previous is None:
            raise ModelFileError(f"{champion['id']} replaced no earlier champion of {stream}: nothing to roll back to")
        return previous, champion["id"]

    def swap(self, stream: str, model_id: str, at: pd.Timestamp, kind: str, by: str, reason: str) -> str | None:
        """Make `model_id` champion by hand (kind manual_promotion or rollback), recording who and why;
        returns the champion it retired."""
        champion = self.with_status(stream, "champion")
        replaced = None if champion is None else champion["id"]
        with self.transaction():
            if replaced is not None:
                self._run("UPDATE models SET status = 'retired' WHERE id = ?", [replaced])
            self._run("UPDATE models SET status = 'champion' WHERE id = ?", [model_id])
            self.decide(stream, at, kind, model_id, replaced, figures={"by": by}, reason=f"by {by}: {reason}")
        return replaced

    def model_row(self, model_id: str) -> dict:
        rows = self.con.execute("SELECT * FROM models WHERE id = ?", [model_id]).df()
        if rows.empty:
            known = ", ".join(i for (i,) in self.con.execute("SELECT id FROM models ORDER BY id").fetchall()) or "none yet"
            raise ModelFileError(f"no model '{model_id}' in {self.store.path}; known: {known}")
        return rows.iloc[0].to_dict()

    # -- forecasts -----------------------------------------------------------------------
    def issue(self, rows: list[dict]) -> int:
        """Append forecasts; a (stream, model, target_time) already issued is kept as it was."""
        if not rows:
            return 0
        frame = pd.DataFrame(rows)[ISSUED]
        for col in ("target_time", "issued_at", "data_through"):
            frame[col] = frame[col].map(naive)
        before = self._count()
        self.con.register("incoming", frame)
        try:
            self._run(f"INSERT INTO forecasts ({', '.join(ISSUED)}) SELECT * FROM incoming ON CONFLICT DO NOTHING")
        finally:
            self.con.unregister("incoming")
        return self._count() - before

    def _count(self) -> int:
        return self._run("SELECT count(*) FROM forecasts")[0][0]

    def realise(self, stream: str, exchange: str, symbol: str, timeframe: str, at: pd.Timestamp) -> int:
        """Fill the realised fields of the stream's forecasts whose candle is now stored (closed)."""
        (n,) = self.con.execute(
            """
            UPDATE forecasts f SET actual = c.close, error = f.point - c.close,
                persistence_error = f.persistence - c.close,
                direction_hit = ((f.point > f.persistence) = (c.close > f.persistence)), realised_at = ?
            FROM candles c
            WHERE f.stream = ? AND f.actual IS NULL AND c.exchange = ? AND c.symbol = ? AND c.timeframe = ?
              AND c.open_time = f.target_time
            """,
            [naive(at), stream, exchange.lower(), symbol.upper(), timeframe],
        ).fetchone() or (0,)
        return int(n)

    def newest_forecast(self, stream: str) -> pd.Timestamp | None:
        """The newest target the stream has a forecast for."""
        return utc(self._run("SELECT max(target_time) FROM forecasts WHERE stream = ?", [stream])[0][0])

    def newest_target(self, stream: str) -> pd.Timestamp | None:
        """The newest target forecast or recorded as stale, missed or without a forecast."""
        (t,) = self._run("SELECT max(t) FROM (SELECT max(target_time) AS t FROM forecasts WHERE stream = ? UNION ALL "
                         "SELECT max(target_time) FROM decisions WHERE stream = ? AND kind IN ('stale', 'missed', 'no_forecast'))",
                         [stream, stream])[0]
        return utc(t)

    def revise(self, stream: str, exchange: str, symbol: str, timeframe: str, at: pd.Timestamp) -> list[tuple]:
        """Scored forecasts whose candle the exchange has since revised: the new close goes to
        `final_actual` (the first `actual` stays); one (target_time, close before, close now) per candle."""
        cond = ("f.stream = ? AND f.actual IS NOT NULL AND c.exchange = ? AND c.symbol = ? AND c.timeframe = ? "
                "AND c.open_time = f.target_time AND c.close <> coalesce(f.final_actual, f.actual)")
        market = [stream, exchange.lower(), symbol.upper(), timeframe]
        changed = self._run("SELECT DISTINCT f.target_time, coalesce(f.final_actual, f.actual), c.close "
                            f"FROM forecasts f, candles c WHERE {cond} ORDER BY 1", market)
        if changed:
            self._run(f"UPDATE forecasts f SET final_actual = c.close, revised_at = ? FROM candles c WHERE {cond}",
                      [naive(at), *market])
        return [(utc(t), was, now) for t, was, now in changed]

    def forecasts(self, stream: str | None = None) -> pd.DataFrame:
        where, args = ("WHERE stream = ?", [stream]) if stream else ("", [])
        return self.con.execute(f"SELECT * FROM forecasts {where} ORDER BY stream, target_time, model", args).df()

    def scored(self, stream: str, model: str, last: int | None = None) -> pd.DataFrame:
        """The model's realised forecasts for the stream, oldest first (the last `last` of them)."""
        limit = f"LIMIT {int(last)}" if last else ""
        rows = self.con.execute(
            f"SELECT target_time, point, persistence, actual, point - actual AS error, persistence - actual AS persistence_error, "
            f"(point > persistence) = (actual > persistence) AS direction_hit FROM (SELECT target_time, point, persistence, "
            f"{FINAL} AS actual FROM forecasts WHERE stream = ? AND model = ? AND actual IS NOT NULL "
            f"ORDER BY target_time DESC {limit}) ORDER BY target_time", [stream, model]).df()
        rows["target_time"] = pd.to_datetime(rows["target_time"]).dt.tz_localize("UTC")
        return rows

    def served_record(self, stream: str, before: pd.Timestamp) -> pd.DataFrame:
        """The stream's scored network forecasts by its champion of the day (role 'champion': served,
        or unserved while the guard serves persistence) whose target opens before `before`, oldest
        first: target_time, actual, network, persistence. What `live.skill` fits a on."""
        rows = self.con.execute(
            f"SELECT target_time, {FINAL} AS actual, network, persistence FROM forecasts WHERE stream = ? AND role = 'champion' "
            "AND network IS NOT NULL AND actual IS NOT NULL AND target_time < ? ORDER BY target_time",
            [stream, naive(before)]).df()
        rows["target_time"] = pd.to_datetime(rows["target_time"]).dt.tz_localize("UTC")
        return rows

    def live_record(self, stream: str, model: str, last: int) -> dict:
        """The model's rolling live record over its last `last` realised forecasts; stored with the model."""
        rows = self.scored(stream, model, last)
        rec = record(rows["error"], rows["persistence_error"], rows["direction_hit"])
        if len(rows):
            rec["through"] = rows["target_time"].iloc[-1].isoformat()
        self._run("UPDATE models SET live = ? WHERE id = ?", [dumps(rec), model])
        return rec

    # -- decisions -----------------------------------------------------------------------
    def decide(self, stream: str, at: pd.Timestamp, kind: str, model: str | None = None, other: str | None = None,
               target_time: pd.Timestamp | None = None, figures: dict | None = None, reason: str = "") -> None:
        self._run(
            "INSERT INTO decisions (stream, decided_at, kind, model, other, target_time, figures, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [stream, naive(at), kind, model, other, naive(target_time),
             dumps(figures or {}), reason],
        )

    def decisions(self, stream: str | None = None, kind: str | None = None) -> pd.DataFrame:
        clauses = [c for c, v in (("stream = ?", stream), ("kind = ?", kind)) if v]
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return self.con.execute(f"SELECT * FROM decisions {where} ORDER BY id", [v for v in (stream, kind) if v]).df()

    def in_fallback(self, stream: str, kind: str = "fallback") -> bool:
        """The guard (`kind` fallback, or risk_fallback: the risk guard) set the stream's champion
        (its served risk model) aside and has not lifted it since (`<kind>_end`)."""
        rows = self._run("SELECT kind FROM decisions WHERE stream = ? AND kind IN (?, ?) ORDER BY id DESC LIMIT 1",
                         [stream, kind, f"{kind}_end"])
        return bool(rows) and rows[0][0] == kind

    def has_decision(self, stream: str, kind: str, target_time: pd.Timestamp) -> bool:
        return bool(self.con.execute("SELECT count(*) FROM decisions WHERE stream = ? AND kind = ? AND target_time = ?",
                                     [stream, kind, naive(target_time)]).fetchone()[0])


def dumps(obj) -> str:
    """Standard JSON text: numpy scalars as numbers, times as ISO text, NaN and inf as null."""

    def plain(x):
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if hasattr(x, "item") and getattr(x, "shape", None) == ():
            x = x.item()
        if hasattr(x, "isoformat"):
            return x.isoformat()
        return None if isinstance(x, float) and not math.isfinite(x) else x

    return json.dumps(plain(obj), allow_nan=False)
