"""The store's running counts for /metrics, kept up to date by reading only what was added since
the last scrape, so a scrape costs the same after years of forecasts as after a day.

* forecasts issued, by stream and role: a stream's forecasts are issued one target at a time, in
  target order, all rows of a target in one statement, and never rewritten; so each scrape reads
  the rows past the newest target it has counted (a high-water mark per stream).
* forecasts realised: a row is realised once. Below the oldest target still unrealised at the
  last scrape (a low-water mark per stream) every row is realised and counted; a scrape reads
  from there to the newest counted target. (A forecast whose candle never arrives holds the mark
  at its target.)
* decisions by stream and kind: their ids only grow (the service is the store's one writer), so
  each scrape reads the ids past the highest counted.
* the live risk record (`RiskTally`), per stream, point model and risk model: scored count and
  the sums of hit80, hit95, VaR breaches and CRPS. A risk forecast is issued once per target,
  with its stream's other rows of that target, and realised once; so, as for realised forecasts,
  rows below the oldest target still unrealised (a low-water mark per stream) are summed for
  good, and a scrape reads from the mark on.

The first scrape reads everything once. DuckDB's zone maps skip the row groups wholly below a
mark, which is what keeps the reads small. Streams are the service's configured ones.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coincast.api.reader import Reader

TICK = timedelta(microseconds=1)  # the store's time resolution: just past a counted target


class Tally:
    def __init__(self, reader: Reader):
        self.reader = reader
        self._lock = threading.Lock()  # two scrapes at once count each row once
        self.issued: dict[tuple[str, str], int] = {}  # (stream, role) -> forecasts
        self.realised: dict[str, int] = {}  # stream -> realised forecasts below its low-water mark
        self.realised_open: dict[str, int] = {}  # stream -> realised ones from the mark on, at the last scrape
        self.decisions: dict[tuple[str, str], int] = {}  # (stream, kind) -> decisions
        self._high: dict[str, datetime] = {}  # stream -> newest target counted
        self._low: dict[str, datetime] = {}  # stream -> oldest target not known to be realised
        self._decided = 0  # highest decision id counted

    def update(self) -> None:
        """Count the rows added (and forecasts realised) since the last update."""
        with self._lock:
            for name in self.reader.names():
                self._forecasts(name)
            self._decisions()

    def _forecasts(self, name: str) -> None:
        r, high = self.reader, self._high.get(name, datetime.min)
        for row in r.rows("SELECT role, count(*) AS n, max(target_time) AS newest FROM forecasts "
                          "WHERE stream = ? AND target_time > ? GROUP BY role", [name, high]):
            self.issued[(name, row["role"])] = self.issued.get((name, row["role"]), 0) + row["n"]
            self._high[name] = max(self._high.get(name, row["newest"]), row["newest"])
        if name not in self._high:
            return  # nothing issued yet
        low, high = self._low.get(name, datetime.min), self._high[name]
        # one statement, one snapshot: the oldest unrealised target in [low, high], and the realised
        # rows before it (settled for good) and from it on (counted again next time)
        (row,) = r.rows(
            "WITH w AS (SELECT target_time, actual IS NOT NULL AS done FROM forecasts "
            "           WHERE stream = ? AND target_time >= ? AND target_time <= ?), "
            "u AS (SELECT min(target_time) AS t FROM w WHERE NOT done) "
            "SELECT (SELECT t FROM u) AS unrealised, "
            "count(*) FILTER (WHERE done AND (target_time < (SELECT t FROM u) OR (SELECT t FROM u) IS NULL)) AS settled, "
            "count(*) FILTER (WHERE done AND target_time >= (SELECT t FROM u)) AS open FROM w", [name, low, high])
        self.realised[name] = self.realised.get(name, 0) + row["settled"]
        self.realised_open[name] = row["open"]
        self._low[name] = row["unrealised"] if row["unrealised"] is not None else high + TICK

    def _decisions(self) -> None:
        for row in self.reader.rows("SELECT stream, kind, count(*) AS n, max(id) AS last FROM decisions "
                                    "WHERE id > ? GROUP BY ALL", [self._decided]):
            self.decisions[(row["stream"], row["kind"])] = self.decisions.get((row["stream"], row["kind"]), 0) + row["n"]
            self._decided = max(self._decided, row["last"])

    def realised_total(self, name: str) -> int:
        return self.realised.get(name, 0) + self.realised_open.get(name, 0)


class RiskTally:
    """Running sums of the scored risk forecasts per (stream, model, risk): their count and the
    sums of their 80%/95% hits, 5% VaR breaches and CRPS (`SUMS`, in that order)."""

    SUMS = ("n", "hit80", "hit95", "breaches", "crps")

    def __init__(self, reader: Reader):
        self.reader = reader
        self._lock = threading.Lock()  # two scrapes at once sum each row once
        self.settled: dict[tuple[str, str, str], list[float]] = {}  # sums of the rows below the stream's mark
        self.open: dict[str, dict[tuple[str, str], list[float]]] = {}  # stream -> (model, risk) -> sums from its mark on
        self._low: dict[str, datetime] = {}  # stream -> oldest target not known to be realised

    def update(self) -> None:
        """Sum the risk forecasts realised since the last update."""
        with self._lock:
            for name in self.reader.names():
                self._stream(name)

    def _stream(self, name: str) -> None:
        # one statement, one snapshot: the oldest unrealised target from the mark on, the newest
        # target, and per (model, risk) the sums of the realised rows before the oldest unrealised
        # target (settled for good) and from it on (read again next time)
        rows = self.reader.rows(
            "WITH w AS (SELECT model, risk, target_time, actual IS NOT NULL AS done, hit80, hit95, var5_breach, crps "
            "           FROM risk_forecasts WHERE stream = ? AND target_time >= ?), "
            "u AS (SELECT min(target_time) FILTER (WHERE NOT done) AS unrealised, max(target_time) AS newest FROM w), "
            "g AS (SELECT model, risk, (target_time >= (SELECT unrealised FROM u)) IS TRUE AS open, count(*) AS n, "
            "      sum(hit80::INT) AS hit80, sum(hit95::INT) AS hit95, sum(var5_breach::INT) AS breaches, "
            "      sum(crps) AS crps FROM w WHERE done GROUP BY ALL) "
            "SELECT * FROM u LEFT JOIN g ON true", [name, self._low.get(name, datetime.min)])
        opened: dict[tuple[str, str], list[float]] = {}
        for row in rows:
            if row["model"] is None:
                continue  # nothing realised from the mark on
            sums = [row[k] for k in self.SUMS]
            if row["open"]:
                opened[(row["model"], row["risk"])] = sums
            else:
                key = (name, row["model"], row["risk"])
                self.settled[key] = added(self.settled.get(key), sums)
        self.open[name] = opened
        unrealised, newest = rows[0]["unrealised"], rows[0]["newest"]
        if unrealised is not None:
            self._low[name] = unrealised
        elif newest is not None:
            self._low[name] = newest + TICK

    def figures(self) -> dict[tuple[str, str, str], list[float]]:
        """(stream, model, risk) -> [n, hit80, hit95, breaches, crps] sums over every scored row."""
        out = dict(self.settled)
        for stream, opened in self.open.items():
            for (model, risk), sums in opened.items():
                out[(stream, model, risk)] = added(out.get((stream, model, risk)), sums)
        return dict(sorted(out.items()))


def added(sums: list[float] | None, more: list[float]) -> list[float]:
    return list(more) if sums is None else [a + b for a, b in zip(sums, more)]
