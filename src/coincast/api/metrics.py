"""`/metrics` in Prometheus' text format, on a CollectorRegistry of the app's own (never the
process-global one, so two apps in one process, e.g. tests, keep separate counts).

Request counts and latencies are counted as requests pass (`RequestMetrics`, ASGI middleware,
labelled by route template). The live figures are read from the store at each scrape
(`LiveCollector`), so they are the registry's own numbers and survive restarts: forecasts issued,
realised and missed, the live record (RMSE, its ratio to persistence's) of each champion and
shadow, data age per stream, trainings by outcome and their durations, promotions and other
decisions, and whether the service loop runs.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

from coincast.api.reader import NotReady, Reader

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DECISION_KINDS = ("promotion", "rejection", "manual_promotion", "rollback", "fallback", "fallback_end", "failure")


class LiveCollector:
    def __init__(self, reader: Reader):
        self.reader = reader

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
        r = self.reader
        issued = CounterMetricFamily("coincast_forecasts_issued", "forecasts issued", labels=["stream", "role"])
        for row in r.rows("SELECT stream, role, count(*) AS n FROM forecasts GROUP BY ALL ORDER BY ALL"):
            issued.add_metric([row["stream"], row["role"]], row["n"])
        realised = CounterMetricFamily("coincast_forecasts_realised", "forecasts scored against their candle",
                                       labels=["stream"])
        for row in r.rows("SELECT stream, count(*) AS n FROM forecasts WHERE actual IS NOT NULL GROUP BY ALL ORDER BY ALL"):
            realised.add_metric([row["stream"]], row["n"])
        missed = CounterMetricFamily("coincast_forecasts_missed", "candles without a forecast, by why",
                                     labels=["stream", "why"])
        decided = CounterMetricFamily("coincast_decisions", "registry decisions by kind", labels=["stream", "kind"])
        for row in r.rows("SELECT stream, kind, count(*) AS n FROM decisions GROUP BY ALL ORDER BY ALL"):
            if row["kind"] in ("missed", "stale", "no_forecast"):
                missed.add_metric([row["stream"], row["kind"]], row["n"])
            elif row["kind"] in DECISION_KINDS:
                decided.add_metric([row["stream"], row["kind"]], row["n"])
        yield from (issued, realised, missed, decided)

        trainings = CounterMetricFamily("coincast_trainings", "trainings by current status", labels=["stream", "status"])
        seconds = SummaryMetricFamily("coincast_training_seconds", "training durations", labels=["stream"])
        ratio = GaugeMetricFamily("coincast_live_rmse_ratio", "live RMSE over persistence's (guard window)",
                                  labels=["stream", "model", "status"])
        rmse = GaugeMetricFamily("coincast_live_rmse", "live RMSE of realised forecasts (guard window)",
                                 labels=["stream", "model", "status"])
        by_stream: dict[str, list[float]] = {}
        counts: dict[tuple[str, str], int] = {}
        for m in r.models():
            counts[(m["stream"], m["status"])] = counts.get((m["stream"], m["status"]), 0) + 1
            if m["figures"].get("seconds") is not None:
                by_stream.setdefault(m["stream"], []).append(float(m["figures"]["seconds"]))
            live = m["live"]
            if m["status"] in ("champion", "shadow") and live.get("n"):
                if live.get("rmse_ratio") is not None:
                    ratio.add_metric([m["stream"], m["id"], m["status"]], live["rmse_ratio"])
                rmse.add_metric([m["stream"], m["id"], m["status"]], live["rmse"])
        for (stream, status), n in sorted(counts.items()):
            trainings.add_metric([stream, status], n)
        for stream, values in sorted(by_stream.items()):
            seconds.add_metric([stream], count_value=len(values), sum_value=sum(values))
        yield from (trainings, seconds, ratio, rmse)

        age = GaugeMetricFamily("coincast_data_age_seconds", "time since the newest stored candle closed",
                                labels=["stream"])
        stale = GaugeMetricFamily("coincast_stream_stale", "1 while the stream's data is stale", labels=["stream"])
        for name in r.names():
            s = r.stream(name)
            if s["data_age_s"] is not None:
                age.add_metric([name], s["data_age_s"])
            stale.add_metric([name], 1.0 if s["stale"] else 0.0)
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
