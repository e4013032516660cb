"""Reads for the API, through the running service's own database (never a second process's lock).

DuckDB lets one process open a store file; inside that process every `duckdb.connect` of the same
path with the same settings joins the one open database. The reader connects once the service has
opened its store and reads committed rows beside the service's writes, with one cursor per thread
(a DuckDB connection serves one thread at a time). Its connection outlives the service's loop, so
a demo that reached the end of its data stays readable. Rows come back as plain dicts: times as
ISO text in UTC ("...Z"), the registry's JSON text parsed.

The latest forecast of each stream is also kept as its JSON answer, until the service's next
pass (`Service.passes`: forecasts are issued and realised only inside a pass), so the route
read most often answers from memory, without a query or an encoding; so are the last
PAGES_KEPT pages of forecast history asked for (a dashboard polls the same page).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd
from pydantic_core import to_json

if TYPE_CHECKING:
    from coincast.live.service import Service

ISO = "'%Y-%m-%dT%H:%M:%SZ'"  # as iso() writes a time, but by DuckDB: a 1,000-row page costs no Python per time
FORECAST_COLUMNS = (f"strftime(target_time, {ISO}) AS target_time, strftime(issued_at, {ISO}) AS issued_at, "
                    f"strftime(data_through, {ISO}) AS data_through, model, role, served, point, lo80, hi80, lo95, hi95, "
                    "persistence, network, shrink, actual, error, persistence_error, direction_hit, "
                    f"strftime(realised_at, {ISO}) AS realised_at, role = 'fallback' AS fallback")
PAGES_KEPT = 16  # forecast history pages kept as JSON until the next pass (at most ~0.5 MB each)
MODEL_COLUMNS = "id, stream, status, created, trained_through, shadow_from, figures, live"


class NotReady(Exception):
    """The service has not opened its store yet (answered 503)."""


class BadCursor(ValueError):
    """A `cursor` query value this API did not hand out (answered 422)."""


def iso(t) -> str | None:
    """A stored (naive UTC) time as ISO text with Z."""
    if t is None or (not isinstance(t, str) and pd.isna(t)):
        return None
    return pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def naive_utc(t: datetime | None) -> datetime | None:
    """A query time (aware or naive, naive meaning UTC) as the store's naive UTC."""
    if t is None:
        return None
    stamp = pd.Timestamp(t)
    return (stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp).to_pydatetime()


def encode_cursor(t) -> str:
    return base64.urlsafe_b64encode(pd.Timestamp(t).isoformat().encode()).decode().rstrip("=")


def decode_cursor(text: str) -> datetime:
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode()
        stamp = pd.Timestamp(raw)
        if pd.isna(stamp):
            raise ValueError(raw)
        return stamp.to_pydatetime()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not one this API handed out: pass the next_cursor of the previous page") from None


class Reader:
    def __init__(self, service: Service):
        self.service = service
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._latest: dict[str, tuple[int, bytes | None]] = {}  # stream -> (passes when read, JSON answer)
        self._pages: dict[tuple, tuple[int, bytes]] = {}  # query -> (passes when read, JSON answer), oldest first

    # -- connection --------------------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cur", None)
        if cur is None:
            with self._lock:
                if self._con is None:
                    if not self.service.opened.is_set():
                        raise NotReady("the live service is starting: its store is not open yet; retry in a moment")
                    self._con = duckdb.connect(str(self.service.store.path))  # joins the service's database
                cur = self._con.cursor()
            self._local.cur = cur
        return cur

    def rows(self, sql: str, args: list | None = None) -> list[dict[str, Any]]:
        cur = self._cursor()
        cur.execute(sql, args or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    # -- streams -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        return [st.stream.name for st in self.service.states]

    def stream(self, name: str) -> dict:
        """What the dashboard and /ready tell of a stream: market, schedule, freshness, champion."""
        st = self.service.state(name)
        s = st.stream
        exchange, symbol, timeframe = s.market
        (newest,) = self.rows("SELECT max(open_time) AS t FROM candles WHERE exchange = ? AND symbol = ? AND timeframe = ?",
                              [exchange.lower(), symbol.upper(), timeframe])[0].values()
        closed = None if newest is None else pd.Timestamp(newest, tz="UTC") + s.bar
        through = self.rows("SELECT max(trained_through) AS t FROM models WHERE stream = ? AND status <> 'discarded'",
                            [name])[0]["t"]
        by_status = {m["status"]: m["id"] for m in self.rows(
            "SELECT status, id FROM models WHERE stream = ? AND status IN ('champion', 'shadow', 'training') "
            "ORDER BY created, id", [name])}
        return {
            "name": name, "data": s.data, "exchange": exchange, "symbol": symbol, "timeframe": timeframe,
            "bar_s": int(s.bar.total_seconds()), "retrain_every": s.retrain_every, "refit": s.refit,
            "shadow": s.shadow, "guard": s.guard,
            "now": iso(self.service.clock.now()),
            "newest_candle": iso(newest),
            "data_age_s": None if closed is None else max(0.0, (self.service.clock.now() - closed).total_seconds()),
            "stale": st.stale, "fallback": st.fallback, "last_error": st.last_error,
            "champion": by_status.get("champion"), "shadow_model": by_status.get("shadow"),
            "training": by_status.get("training"),
            # the next scheduled training starts once the candle opening at this time has closed
            "next_retrain_after": None if through is None else iso(pd.Timestamp(through) + s.retrain_every * s.bar),
        }

    # -- forecasts -----------------------------------------------------------------------------
    def latest(self, name: str) -> dict | None:
        rows = self.rows(f"SELECT {FORECAST_COLUMNS} FROM forecasts WHERE stream = ? AND served "
                         "ORDER BY target_time DESC LIMIT 1", [name])
        return rows[0] if rows else None

    def latest_cached(self, name: str) -> tuple[bool, bytes | None]:
        """(True, the latest forecast's JSON answer or None) if read since the service's last pass;
        (False, None) if `latest_json` must read it again. No query: safe in the event loop."""
        hit = self._latest.get(name)
        return (True, hit[1]) if hit is not None and hit[0] == self.service.passes else (False, None)

    def latest_json(self, name: str) -> bytes | None:
        """The latest served forecast as its JSON answer (None: none yet), read and kept."""
        passes = self.service.passes  # read first: a pass that ends during the query makes it stale
        found = self.latest(name)
        body = None if found is None else json_bytes({"stream": name, **found})
        self._latest[name] = (passes, body)
        return body

    def forecasts_json(self, name: str, start: datetime | None, end: datetime | None, limit: int,
                       cursor: str | None, model: str | None) -> bytes:
        """`forecasts` as its JSON answer, kept until the service's next pass."""
        key, passes = (name, start, end, limit, cursor, model), self.service.passes
        with self._lock:
            hit = self._pages.get(key)
        if hit is not None and hit[0] == passes:
            return hit[1]
        body = json_bytes(self.forecasts(name, start, end, limit, cursor, model))
        with self._lock:
            self._pages.pop(key, None)
            self._pages[key] = (passes, body)
            while len(self._pages) > PAGES_KEPT:
                del self._pages[next(iter(self._pages))]
        return body

    def forecasts(self, name: str, start: datetime | None, end: datetime | None, limit: int,
                  cursor: str | None, model: str | None) -> dict:
        """One page of the stream's served forecasts (or one model's), oldest first."""
        where, args = ["stream = ?"], [name]
        where.append("model = ?" if model else "served")
        args += [model] if model else []
        for clause, value in (("target_time >= ?", naive_utc(start)), ("target_time < ?", naive_utc(end)),
                              ("target_time > ?", decode_cursor(cursor) if cursor else None)):
            if value is not None:
                where.append(clause)
                args.append(value)
        rows = self.rows(f"SELECT {FORECAST_COLUMNS} FROM forecasts WHERE {' AND '.join(where)} "
                         f"ORDER BY target_time LIMIT {int(limit) + 1}", args)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"stream": name, "model": model, "forecasts": rows,
                "next_cursor": encode_cursor(pd.Timestamp(rows[-1]["target_time"]).tz_localize(None)) if more else None}

    def candles(self, name: str, start: datetime | None, end: datetime | None, limit: int, cursor: str | None) -> dict:
        s = self.service.state(name).stream
        exchange, symbol, timeframe = s.market
        where, args = ["exchange = ? AND symbol = ? AND timeframe = ?"], [exchange.lower(), symbol.upper(), timeframe]
        for clause, value in (("open_time >= ?", naive_utc(start)), ("open_time < ?", naive_utc(end)),
                              ("open_time > ?", decode_cursor(cursor) if cursor else None)):
            if value is not None:
                where.append(clause)
                args.append(value)
        rows = self.rows(f"SELECT open_time, open, high, low, close, volume FROM candles WHERE {' AND '.join(where)} "
                         f"ORDER BY open_time LIMIT {int(limit) + 1}", args)
        more = len(rows) > limit
        rows = rows[:limit]
        out = [{**r, "open_time": iso(r["open_time"]), "close_time": iso(pd.Timestamp(r["open_time"]) + s.bar)} for r in rows]
        return {"stream": name, "candles": out, "next_cursor": encode_cursor(rows[-1]["open_time"]) if more else None}

    def decisions(self, name: str, limit: int) -> list[dict]:
        rows = self.rows("SELECT id, decided_at, kind, model, other, target_time, figures, reason FROM decisions "
                         f"WHERE stream = ? ORDER BY id DESC LIMIT {int(limit)}", [name])
        return [_decision(r) for r in rows]

    # -- models --------------------------------------------------------------------------------
    def model_ids(self) -> list[str]:
        return [r["id"] for r in self.rows("SELECT id FROM models ORDER BY stream, created, id")]

    def models(self, stream: str | None = None) -> list[dict]:
        where, args = ("WHERE stream = ?", [stream]) if stream else ("", [])
        rows = self.rows(f"SELECT {MODEL_COLUMNS} FROM models {where} ORDER BY stream, created, id", args)
        return [_model(r) for r in rows]

    def model(self, model_id: str) -> dict | None:
        rows = self.rows(f"SELECT {MODEL_COLUMNS}, settings FROM models WHERE id = ?", [model_id])
        if not rows:
            return None
        m = _model(rows[0])
        m["settings"] = json.loads(rows[0]["settings"] or "{}")
        found = self.rows("SELECT id, decided_at, kind, model, other, target_time, figures, reason FROM decisions "
                          "WHERE model = ? OR other = ? ORDER BY id", [model_id, model_id])
        m["decisions"] = [_decision(r) for r in found]
        return m


def json_bytes(value) -> bytes:
    """JSON as FastAPI would answer it (pydantic's encoder; NaN and infinities as null)."""
    return to_json(value, inf_nan_mode="null")


def _model(r: dict) -> dict:
    out = {**r, "figures": json.loads(r["figures"] or "{}"), "live": json.loads(r["live"] or '{"n": 0}')}
    for key in ("created", "trained_through", "shadow_from"):
        out[key] = iso(r[key])
    return out


def _decision(r: dict) -> dict:
    return {**r, "decided_at": iso(r["decided_at"]), "target_time": iso(r["target_time"]),
            "figures": json.loads(r["figures"] or "{}")}
