"""The served distribution over HTTP: `/v1/streams/{name}/risk` and its `/metrics` figures.

A daily stream's models forecast the distribution of the next candle's percent log return
(live/risk.py; rows in the registry's `risk_forecasts`). The route answers the latest served one
(its quantiles at every level, in return and in price, the 80%/95% ranges, the 5% VaR), the last
`limit` served ones with their outcome (the fan chart's history: ranges, realised close, hits,
breaches), and the live record of each of the stream's risk models, over every scored forecast
and over the guard's window. The collector exports coverage, VaR breaches and CRPS per model to
Prometheus from running sums (api/tally.py's RiskTally): a scrape reads only the rows from the
oldest target still unrealised on, as api/metrics.py does for forecasts.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Depends, Query
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from coincast.api.reader import ISO, NotReady, Reader, iso
from coincast.api.routes import known_stream, read_access, reader
from coincast.api.tally import RiskTally
from coincast.evaluation.risk import LEVELS

router = APIRouter(prefix="/v1")
ROW = (f"strftime(target_time, {ISO}) AS target_time, strftime(issued_at, {ISO}) AS issued_at, model, risk, served, "
       "previous, lo80, hi80, lo95, hi95, var5, actual, crps, hit80, hit95, var5_breach")
# one row per (model, risk): the record over every scored forecast, and over the last `guard` of them
RECORD = """
SELECT model, risk, count(*) AS n, avg(crps) AS crps, avg(hit80::INT) AS coverage_80, avg(hit95::INT) AS coverage_95,
       sum(var5_breach::INT) AS var5_breaches,
       count(*) FILTER (WHERE k <= ?) AS window_n, avg(crps) FILTER (WHERE k <= ?) AS window_crps,
       avg(hit80::INT) FILTER (WHERE k <= ?) AS window_coverage_80, avg(hit95::INT) FILTER (WHERE k <= ?) AS window_coverage_95,
       sum(var5_breach::INT) FILTER (WHERE k <= ?) AS window_var5_breaches
FROM (SELECT *, row_number() OVER (PARTITION BY model, risk ORDER BY target_time DESC) AS k FROM risk_forecasts
      WHERE stream = ? AND actual IS NOT NULL)
GROUP BY model, risk ORDER BY model, risk
"""


def risk_view(r: Reader, name: str, limit: int) -> dict:
    """The stream's served distribution, its recent history and its models' live records."""
    st = r.service.state(name)
    newest = r.rows("SELECT quantiles, " + ROW + " FROM risk_forecasts WHERE stream = ? AND served "
                    "ORDER BY target_time DESC LIMIT 1", [name])
    latest = None
    if newest:
        row = newest[0]
        q = [float(v) for v in row.pop("quantiles")]
        latest = {**row, "levels": LEVELS.tolist(), "quantiles": q,
                  "price_quantiles": [row["previous"] * math.exp(v / 100) for v in q]}
    history = r.rows(f"SELECT * FROM (SELECT {ROW} FROM risk_forecasts WHERE stream = ? AND served "
                     f"ORDER BY target_time DESC LIMIT {int(limit)}) ORDER BY target_time", [name])
    for h in history:
        h["close"] = None if h["actual"] is None else h["previous"] * math.exp(h["actual"] / 100)
    guard = st.stream.guard
    records = r.rows(RECORD, [guard] * 5 + [name])
    status = {m["id"]: m["status"] for m in r.rows("SELECT id, status FROM models WHERE stream = ?", [name])}
    for rec in records:
        rec["status"] = status.get(rec["model"])
    decided = r.rows("SELECT decided_at, kind, reason FROM decisions WHERE stream = ? AND kind IN ('risk_fallback', "
                     "'risk_fallback_end') ORDER BY id DESC LIMIT 1", [name])
    return {"stream": name, "unit": "percent log return of the next candle (price_quantiles: its close)",
            "fallback": st.risk_fallback, "guard": guard, "latest": latest, "history": history, "live": records,
            "guard_decision": {**decided[0], "decided_at": iso(decided[0]["decided_at"])} if decided else None}


@router.get("/streams/{name}/risk", dependencies=[Depends(read_access)])
def risk(name: str, limit: int = Query(60, ge=1, le=1000, description="served distributions in `history`"),
         r: Reader = Depends(reader)) -> dict:
    """The served distribution of the next return (daily streams): quantiles 1..99% (and 2.5/97.5%),
    80%/95% ranges in price, 5% VaR; the last `limit` served ones with their outcome; each risk
    model's live record (CRPS, 80%/95% coverage, 5% VaR breaches) overall and over the guard window;
    whether the risk guard serves GARCH-t's distribution."""
    return risk_view(r, known_stream(name, r), limit)


class RiskCollector:
    """Prometheus figures of the live risk record, per stream, point model and risk model."""

    def __init__(self, reader: Reader):
        self.reader = reader
        self.tally = RiskTally(reader)

    def describe(self):
        return []  # collected at scrape time only

    def collect(self):
        try:
            self.tally.update()
            fallback = {st.stream.name: st.risk_fallback for st in self.reader.service.states}
        except NotReady:
            return
        labels = ["stream", "model", "risk"]
        coverage = GaugeMetricFamily("coincast_risk_coverage", "share of realised returns inside the central range",
                                     labels=[*labels, "level"])
        breaches = CounterMetricFamily("coincast_risk_var5_breaches", "realised returns below the 5% VaR", labels=labels)
        scored = CounterMetricFamily("coincast_risk_scored", "risk forecasts scored against their candle", labels=labels)
        crps = GaugeMetricFamily("coincast_risk_crps", "mean CRPS of the scored risk forecasts (percent)", labels=labels)
        for key, (n, hit80, hit95, breached, crps_sum) in self.tally.figures().items():
            coverage.add_metric([*key, "80"], hit80 / n)
            coverage.add_metric([*key, "95"], hit95 / n)
            breaches.add_metric(list(key), breached)
            scored.add_metric(list(key), n)
            crps.add_metric(list(key), crps_sum / n)
        guard = GaugeMetricFamily("coincast_risk_fallback", "1 while the risk guard serves GARCH-t's distribution",
                                  labels=["stream"])
        for stream, on in fallback.items():
            guard.add_metric([stream], 1.0 if on else 0.0)
        yield from (coverage, breaches, scored, crps, guard)
