"""Reads for the API, through the running service's own database (never a second process's lock).

DuckDB lets one process open a store file; inside that process every `duckdb.connect` of the same
path with the same settings joins the one open database. The reader connects once the service has
opened its store and reads committed rows beside the service's writes, with one cursor per thread
(a DuckDB connection serves one thread at a time). Its connection outlives the service's loop, so
a demo that reached the end of its data stays readable. Rows come back as plain dicts: times as
ISO text in UTC ("...Z"), the registry's JSON text parsed.

Every list is a page: at most `limit` rows and a `next_cursor` (null on the last page) that
continues after the page's last row in the list's own order, so a page costs the same however
long the history grows. A cursor is opaque to clients: the last row's sort key, base64.

The latest forecast of each stream is also kept as its JSON answer, until the service's next
pass (`Service.passes`: forecasts are issued and realised only inside a pass), so the route
read most often answers from memory, without a query or an encoding; so are the last
PAGES_KEPT pages of forecast history asked for (a dashboard polls the same page). Each stream's
newest candle is read past the newest one seen before (`newest_candle`), not over the stream's
whole history.
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
MODEL_COLUMNS = "id, stream, status, created, trained_through, shadow_from, node, figures, live"
DECISION_COLUMNS = "id, decided_at, kind, model, other, target_time, figures, reason"
DECISIONS_SHOWN = 50  # decisions about a model shown with it, newest first


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


def encode_cursor(*key) -> str:
    """A page's last row's sort key as a cursor (times as ISO text)."""
    plain = [pd.Timestamp(k).isoformat() if isinstance(k, (datetime, pd.Timestamp)) else k for k in key]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode_cursor(text: str, *kinds) -> list:
    """The sort key in a cursor, each part read by its kind (`as_time`, `as_str`, `as_int`); BadCursor otherwise."""
    try:
        raw = json.loads(base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode())
        if not isinstance(raw, list) or len(raw) != len(kinds):
            raise ValueError(raw)
        return [kind(value) for kind, value in zip(kinds, raw)]
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise BadCursor("cursor is not one this API handed out: pass the next_cursor of the previous page") from None


def as_time(value: str) -> datetime:
    """A cursor's time (naive UTC, as stored)."""
    if not isinstance(value, str):
        raise ValueError(value)
    stamp = pd.Timestamp(value)
    if pd.isna(stamp) or stamp.tzinfo is not None:
        raise ValueError(value)
    return stamp.to_pydatetime()


def as_int(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(value)
    return value


def as_str(value) -> str:
    if not isinstance(value, str):
        raise ValueError(value)
    return value


class Reader:
    def __init__(self, service: Service):
        self.service = service
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._latest: dict[str, tuple[int, bytes | None]] = {}  # stream -> (passes when read, JSON answer)
        self._pages: dict[tuple, tuple[int, bytes]] = {}  # query -> (passes when read, JSON answer), oldest first
        self._newest: dict[str, datetime] = {}  # stream -> open time of its newest stored candle, as last read

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
        newest = self.newest_candle(name)
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

    def newest_candle(self, name: str) -> datetime | None:
        """Open time of the stream's newest stored candle: read past the one read before (the
        candles of a market are only ever added or revised, never removed), so the scan skips the
        stream's history."""
        exchange, symbol, timeframe = self.service.state(name).stream.market
        seen = self._newest.get(name)
        (found,) = self.rows("SELECT max(open_time) AS t FROM candles WHERE exchange = ? AND symbol = ? AND timeframe = ? "
                             "AND open_time > ?", [exchange.lower(), symbol.upper(), timeframe, seen or datetime.min])[0].values()
        if found is not None:
            with self._lock:
                self._newest[name] = seen = max(found, self._newest.get(name, found))
        return seen

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
                              ("target_time > ?", decode_cursor(cursor, as_time)[0] if cursor else None)):
            if value is not None:
                where.append(clause)
                args.append(value)
        rows = self.rows(f"SELECT {FORECAST_COLUMNS} FROM forecasts WHERE {' AND '.join(where)} "
                         f"ORDER BY target_time LIMIT {int(limit) + 1}", args)
        rows, more = rows[:limit], len(rows) > limit
        return {"stream": name, "model": model, "forecasts": rows,
                "next_cursor": encode_cursor(pd.Timestamp(rows[-1]["target_time"]).tz_localize(None)) if more else None}

    def candles(self, name: str, start: datetime | None, end: datetime | None, limit: int, cursor: str | None) -> dict:
        s = self.service.state(name).stream
        exchange, symbol, timeframe = s.market
        where, args = ["exchange = ? AND symbol = ? AND timeframe = ?"], [exchange.lower(), symbol.upper(), timeframe]
        for clause, value in (("open_time >= ?", naive_utc(start)), ("open_time < ?", naive_utc(end)),
                              ("open_time > ?", decode_cursor(cursor, as_time)[0] if cursor else None)):
            if value is not None:
                where.append(clause)
                args.append(value)
        rows = self.rows(f"SELECT open_time, open, high, low, close, volume FROM candles WHERE {' AND '.join(where)} "
                         f"ORDER BY open_time LIMIT {int(limit) + 1}", args)
        rows, more = rows[:limit], len(rows) > limit
        out = [{**r, "open_time": iso(r["open_time"]), "close_time": iso(pd.Timestamp(r["open_time"]) + s.bar)} for r in rows]
        return {"stream": name, "candles": out, "next_cursor": encode_cursor(rows[-1]["open_time"]) if more else None}

    def decisions(self, name: str, limit: int, cursor: str | None = None, model: str | None = None) -> dict:
        """One page of the stream's decisions (or those about one model: as `model` or `other`), newest first."""
        where, args = ["stream = ?"], [name]
        if model is not None:
            where.append("(model = ? OR other = ?)")
            args += [model, model]
        if cursor:
            where.append("id < ?")
            args += decode_cursor(cursor, as_int)
        rows = self.rows(f"SELECT {DECISION_COLUMNS} FROM decisions WHERE {' AND '.join(where)} "
                         f"ORDER BY id DESC LIMIT {int(limit) + 1}", args)
        rows, more = rows[:limit], len(rows) > limit
        return {"stream": name, "model": model, "decisions": [_decision(r) for r in rows],
                "next_cursor": encode_cursor(rows[-1]["id"]) if more else None}

    # -- models --------------------------------------------------------------------------------
    def has_model(self, model_id: str) -> bool:
        return bool(self.rows("SELECT count(*) AS n FROM models WHERE id = ?", [model_id])[0]["n"])

    def models(self, stream: str | None, limit: int, cursor: str | None) -> dict:
        """One page of models (every stream's, or one's), by stream, then oldest first."""
        where, args = [], []
        if stream:
            where.append("stream = ?")
            args.append(stream)
        if cursor:
            where.append("(stream, created, id) > (?, ?, ?)")
            args += decode_cursor(cursor, as_str, as_time, as_str)
        rows = self.rows(f"SELECT {MODEL_COLUMNS} FROM models {'WHERE ' + ' AND '.join(where) if where else ''} "
                         f"ORDER BY stream, created, id LIMIT {int(limit) + 1}", args)
        rows, more = rows[:limit], len(rows) > limit
        last = rows[-1] if more else None
        return {"models": [_model(r) for r in rows],
                "next_cursor": encode_cursor(last["stream"], last["created"], last["id"]) if more else None}

    def model(self, model_id: str) -> dict | None:
        """One model with its settings and its newest DECISIONS_SHOWN decisions (`decisions_cursor`
        pages on through /v1/streams/{stream}/decisions?model=...)."""
        rows = self.rows(f"SELECT {MODEL_COLUMNS}, settings FROM models WHERE id = ?", [model_id])
        if not rows:
            return None
        m = _model(rows[0])
        m["settings"] = json.loads(rows[0]["settings"] or "{}")
        page = self.decisions(m["stream"], DECISIONS_SHOWN, model=model_id)
        m["decisions"], m["decisions_cursor"] = page["decisions"], page["next_cursor"]
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
