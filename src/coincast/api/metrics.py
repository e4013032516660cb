"""`/metrics` in Prometheus' text format, on a CollectorRegistry of the app's own (never the
process-global one, so two apps in one process, e.g. tests, keep separate counts).

Request counts and latencies are counted as requests pass (`RequestMetrics`, ASGI middleware,
labelled by route template). The live figures come from the store (`LiveCollector`), so they are
the registry's own numbers and survive restarts: forecasts issued, realised and missed, the live
record (RMSE, its ratio to persistence's) of each champion and shadow, data age per stream,
trainings by status and their durations, promotions and other decisions, and whether the service
loop runs. A scrape reads only what was added since the last one: forecasts and decisions, the
tables that grow with every candle, past their high-water marks (tally.py), each stream's newest
candle past the one read before; the models table, one row per training, in one narrow query.
"""

from __future__ import annotations

import json
import time

import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

from coincast.api.reader import NotReady, Reader
from coincast.api.tally import Tally

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DECISION_KINDS = ("promotion", "rejection", "manual_promotion", "rollback", "fallback", "fallback_end", "failure")


class LiveCollector:
    def __init__(self, reader: Reader):
        self.reader = reader
        self.tally = Tally(reader)

    def describe(self):
        return []  # collected at scrape time only

    def collect(self):
        service = self.reader.service
        up = GaugeMetricFamily("coincast_service_running", "1 while the live service's loop runs")
        up.add_metric([], 1.0 if service.running else 0.0)
        yield up
        try:
            yield from self._live()
        except NotReady:
            return

    def _live(self):
        r, t = self.reader, self.tally
        t.update()
        issued = CounterMetricFamily("coincast_forecasts_issued", "forecasts issued", labels=["stream", "role"])
        for (stream, role), n in sorted(t.issued.items()):
            issued.add_metric([stream, role], n)
        realised = CounterMetricFamily("coincast_forecasts_realised", "forecasts scored against their candle",
                                       labels=["stream"])
        for stream in sorted(set(t.realised) | set(t.realised_open)):
            realised.add_metric([stream], t.realised_total(stream))
        missed = CounterMetricFamily("coincast_forecasts_missed", "candles without a forecast, by why",
                                     labels=["stream", "why"])
        decided = CounterMetricFamily("coincast_decisions", "registry decisions by kind", labels=["stream", "kind"])
        for (stream, kind), n in sorted(t.decisions.items()):
            if kind in ("missed", "stale", "no_forecast"):
                missed.add_metric([stream, kind], n)
            elif kind in DECISION_KINDS:
                decided.add_metric([stream, kind], n)
        yield from (issued, realised, missed, decided)

        trainings = CounterMetricFamily("coincast_trainings", "trainings by current status", labels=["stream", "status"])
        seconds = SummaryMetricFamily("coincast_training_seconds", "training durations", labels=["stream"])
        by_stream: dict[str, list[float]] = {}
        for row in r.rows("SELECT stream, status, count(*) AS n, count(s) AS timed, coalesce(sum(s), 0) AS total FROM "
                          "(SELECT stream, status, try_cast(json_extract_string(figures, '$.seconds') AS DOUBLE) AS s "
                          "FROM models) GROUP BY ALL ORDER BY ALL"):
            trainings.add_metric([row["stream"], row["status"]], row["n"])
            counted = by_stream.setdefault(row["stream"], [0, 0.0])
            counted[0] += row["timed"]
            counted[1] += row["total"]
        for stream, (n, total) in sorted(by_stream.items()):
            if n:
                seconds.add_metric([stream], count_value=n, sum_value=total)
        ratio = GaugeMetricFamily("coincast_live_rmse_ratio", "live RMSE over persistence's (guard window)",
                                  labels=["stream", "model", "status"])
        rmse = GaugeMetricFamily("coincast_live_rmse", "live RMSE of realised forecasts (guard window)",
                                 labels=["stream", "model", "status"])
        for m in r.rows("SELECT id, stream, status, live FROM models WHERE status IN ('champion', 'shadow') ORDER BY ALL"):
            live = json.loads(m["live"] or "{}")
            if live.get("n"):
                if live.get("rmse_ratio") is not None:
                    ratio.add_metric([m["stream"], m["id"], m["status"]], live["rmse_ratio"])
                rmse.add_metric([m["stream"], m["id"], m["status"]], live["rmse"])
        yield from (trainings, seconds, ratio, rmse)

        age = GaugeMetricFamily("coincast_data_age_seconds", "time since the newest stored candle closed",
                                labels=["stream"])
        stale = GaugeMetricFamily("coincast_stream_stale", "1 while the stream's data is stale", labels=["stream"])
        now = r.service.clock.now()
        for name in r.names():
            st, newest = r.service.state(name), r.newest_candle(name)
            if newest is not None:
                closed = pd.Timestamp(newest, tz="UTC") + st.stream.bar
                age.add_metric([name], max(0.0, (now - closed).total_seconds()))
            stale.add_metric([name], 1.0 if st.stale else 0.0)
        yield from (age, stale)


class Metrics:
    """The app's registry: request counters and histograms, and the live figures."""

    def __init__(self, reader: Reader):
        self.registry = CollectorRegistry()
        self.requests = Counter("coincast_http_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("coincast_http_request_seconds", "time to answer a request", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(LiveCollector(reader))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware: count each request and time it, labelled by its route's template."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def watched(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            route = getattr(scope.get("route"), "path", None) or ("/static" if scope["path"].startswith("/static/")
                                                                  else "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
