"""`make load`: requests/s and latency of `coincast serve`'s read routes, on 127.0.0.1.

    .venv/bin/python benchmarks/load.py [--seconds 30] [--connections 16]

Starts benchmarks/load_server.py (the serve app over the demo's two streams, 1,050 days of
forecasts, a clock held still so the data is fixed), asks it for a retrain of btc-1d through the
API with the write token, and, while that training runs in the server's worker process, drives
for `--seconds` each (after a 1 s warm-up that is not counted):

1. the latest forecast, GET /v1/streams/btc-1d/forecast (target >= 1,000 requests/s, p99 <= 50 ms);
2. the history, GET /v1/streams/btc-1d/forecasts?limit=1000: a full 1,000-row page (target >= 100/s).

The load generator is a small asyncio client in this process: `--connections` keep-alive HTTP/1.1
connections, each sending its next request when the previous answer has been read whole (closed
loop); latency is from sending a request to the last byte of its answer. Every answer not 200 or
whose connection failed counts as an error. During each measurement the stream's status is read
every 0.5 s on a connection of its own, to show whether the training was in progress.
The client, the server and the training share the machine's cores: the figures are for all three.

Writes benchmarks/results/load.json and BENCHMARKS.md's load section (a run of 30 s or more), or
benchmarks/results/quick/load.json (shorter runs: checks, not figures).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from load_server import OneLineParser

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TOKEN = "load-benchmark-token"
STREAM = "btc-1d"
PAGE = f"/v1/streams/{STREAM}/forecasts?limit=1000"
PAGES = 53  # distinct 1,000-row pages of the history route (start = the first target + 0..52 days): more than
            # the server keeps (coincast.api.reader.PAGES_KEPT), so asking them in turn, each is a query
ROUTES = {  # name: (what, target requests/s, target p99 ms)
    "latest": ("the latest forecast", 1000, 50),
    "history": ("one 1,000-row history page, asked again and again (a polling dashboard): from memory after the first", 100, None),
    "history_pages": (f"{PAGES} different 1,000-row history pages in turn: each one read from the store and encoded", 100, None),
}
VERSIONS = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "orjson", "duckdb", "pydantic", "prometheus-client")


# -- the load generator ------------------------------------------------------------------------
class Tally:
    def __init__(self):
        self.latencies: list[float] = []
        self.errors = 0
        self.bytes = 0


async def _get(reader, writer, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if length is None:
        raise ConnectionError("an answer without Content-Length")
    return status, await reader.readexactly(int(length.group(1)))


async def _connection(host: str, port: int, requests, until: float, tally: Tally, counting: asyncio.Event) -> None:
    conn = None
    while time.perf_counter() < until:
        try:
            if conn is None:
                conn = await asyncio.open_connection(host, port)
            request = next(requests)
            start = time.perf_counter()
            status, body = await _get(*conn, request)
            done = time.perf_counter()
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            if counting.is_set():
                tally.errors += 1
            conn = None
            await asyncio.sleep(0.01)
            continue
        if counting.is_set() and done <= until:  # answers finishing after the end are not counted
            tally.latencies.append(done - start)
            tally.bytes += len(body)
            tally.errors += status != 200
    if conn is not None:
        conn[1].close()


async def _watch(host: str, port: int, until: float, seen: list) -> None:
    """The stream's `training` field every 0.5 s (None: no training in progress)."""
    request = f"GET /v1/streams/{STREAM} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    conn = await asyncio.open_connection(host, port)
    while time.perf_counter() < until:
        status, body = await _get(*conn, request)
        seen.append(json.loads(body)["training"] if status == 200 else f"HTTP {status}")
        await asyncio.sleep(0.5)
    conn[1].close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(host: str, port: int, paths: list[str], seconds: float, connections: int, warmup: float,
                 server: int) -> dict:
    tally, counting, seen = Tally(), asyncio.Event(), []
    requests = itertools.cycle([f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode() for p in paths])
    begin = time.perf_counter()
    until = begin + warmup + seconds
    tasks = [asyncio.create_task(_connection(host, port, requests, until, tally, counting)) for _ in range(connections)]
    await asyncio.sleep(warmup)
    counting.set()
    measured_from = time.perf_counter()
    cpu0, server0 = os.times(), cpu_seconds(server)
    watch = asyncio.create_task(_watch(host, port, until, seen))
    await asyncio.sleep(until - time.perf_counter())
    cpu, server1 = os.times(), cpu_seconds(server)
    await asyncio.gather(*tasks, watch)
    elapsed = until - measured_from
    ms = np.array(tally.latencies) * 1000 if tally.latencies else np.array([np.nan])
    return {"paths": paths if len(paths) <= 2 else [paths[0], "...", paths[-1]], "seconds": round(elapsed, 2), "connections": connections, "requests": len(tally.latencies),
            "requests_per_s": round(len(tally.latencies) / elapsed, 1), "errors": tally.errors,
            "latency_ms": {p: round(float(np.percentile(ms, q)), 2) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))}
                          | {"max": round(float(ms.max()), 2)},
            "mean_answer_bytes": round(tally.bytes / max(1, len(tally.latencies))),
            "client_cpu_s": round(cpu.user + cpu.system - cpu0.user - cpu0.system, 1),
            "server_cpu_s": round(server1 - server0, 1),
            "training_seen": seen}


def drive(url: str, paths: list[str], seconds: float, connections: int, server: int, warmup: float = 1.0) -> dict:
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        return runner.run(_drive(host, int(port), paths, seconds, connections, warmup, server))


# -- the server --------------------------------------------------------------------------------
class Server:
    """benchmarks/load_server.py as a process; its output lines kept in `lines`."""

    def __init__(self, folder: Path):
        env = {**os.environ, "COINCAST_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "load_server.py"), "--folder", str(folder)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        self.lines: list[str] = []
        self.url: str | None = None
        self.listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            print(f"  server: {line.rstrip()}", flush=True)
            if (m := re.search(r"serving on (http://\S+)/", line)) and self.url is None:
                self.url = m.group(1)
                self.listening.set()
        self.listening.set()

    def wait_ready(self, timeout: float = 1800) -> httpx.Client:
        if not self.listening.wait(timeout) or self.url is None:
            raise SystemExit("the load server did not start:\n" + "\n".join(self.lines[-20:]))
        http = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 300
        while http.get("/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"the load server never became ready: {http.get('/ready').text}")
            time.sleep(0.2)
        return http

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def served_forecasts(http: httpx.Client) -> int:
    """The stream's served forecasts, counted through the history route's pages."""
    n, cursor = 0, None
    while True:
        page = http.get(f"/v1/streams/{STREAM}/forecasts", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
        n += len(page["forecasts"])
        if not (cursor := page["next_cursor"]):
            return n


# -- the report ----------------------------------------------------------------------------------
def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.+)", lscpu)
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": model.group(1).strip() if model else platform.processor(), "cores": os.cpu_count(),
            "python": platform.python_version(), "versions": versions}


def verdict(name: str, result: dict) -> dict:
    _, rate, p99 = ROUTES[name]
    ok = result["requests_per_s"] >= rate and (p99 is None or result["latency_ms"]["p99"] <= p99) and not result["errors"]
    return {"target": f">= {rate} requests/s" + (f", p99 <= {p99} ms" if p99 else "") + ", no errors", "met": bool(ok)}


def section(doc: dict) -> str:
    m = doc["machine"]
    lines = ["<!-- load:begin -->", "## Load: the read routes of `coincast serve` (`make load`)", "",
             f"Measured {doc['measured']} by `benchmarks/load.py` ({doc['seconds']:g} s per route, {doc['connections']} "
             f"keep-alive connections, closed loop, after a 1 s warm-up) on {m['cpu']}, {m['cores']} cores. "
             "The load generator (one Python process), the server (one process: uvicorn's event loop, the live "
             "service's thread) and the training (the worker process, one thread) share those cores. "
             "Load average (1, 5, 15 min) before the run: " + ", ".join(f"{x:g}" for x in doc["load_before"]) + ".",
             f"Python {m['python']}, " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".", "",
             "| route | requests/s | p50 ms | p95 ms | p99 ms | errors | training in progress | CPU s client / server | target | met |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in doc["routes"].items():
        lat, seen = r["latency_ms"], r["training_seen"]
        busy = sum(1 for s in seen if s == doc["retrain"]["model"])
        lines.append(f"| {ROUTES[name][0]}: `GET {r['paths'][0]}`{' ...' if len(r['paths']) > 1 else ''} | {r['requests_per_s']:,.0f} | {lat['p50']} | {lat['p95']} | {lat['p99']} | "
                     f"{r['errors']} | {busy} of {len(seen)} checks | {r['client_cpu_s']} / {r['server_cpu_s']} | "
                     f"{r['verdict']['target']} | "
                     f"{'yes' if r['verdict']['met'] else 'no'} |")
    lines += ["", f"The retrain ({doc['retrain']['model']}, asked for with `POST /v1/streams/{STREAM}/retrain` and the "
              "write token) ran in the worker process during the measurements: \"training in progress\" counts the "
              "checks of `GET /v1/streams/btc-1d` that named it. Data: the demo's store with "
              f"{doc['store']['served_forecasts']:,} served forecasts per stream, on a clock held still (no tick during the "
              "measurement). Server CPU is the server process's (the training is another process). "
              "Figures: `benchmarks/results/load.json`.", "", LEVERS, "<!-- load:end -->"]
    return "\n".join(lines)


LEVERS = """What it took (each lever measured with `--seconds 3` on 2026-11-26 while another benchmark held the
machine, load average 5-10, so only the direction of each change is meaningful): at first the latest
forecast was a DuckDB query per request encoded by FastAPI in the thread pool, 246 requests/s, p99
136 ms. Keeping each stream's latest forecast as its JSON answer until the service's next pass, in an
async route with async token and reader dependencies: 1,097 requests/s, p99 32 ms. The history page: 35
requests/s; times formatted by DuckDB instead of pandas: 54; the page encoded straight from the rows
(pydantic-core, skipping FastAPI's validation of 1,000 dicts): 118; the last 16 pages kept until the next
pass: about 1,100 for a page asked again (each distinct page still costs a query). uvicorn's httptools
parser instead of h11 (not a dependency: tried by installing it) gave 1,930-3,370 requests/s against
1,490-2,720 for h11 on the latest forecast, within the noise of the busy machine; uvloop is already
used (uvicorn picks it up), the access log was already off, and more uvicorn workers are not an option
(the DuckDB store has one owner process)."""


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text()
    block = re.compile(r"<!-- load:begin -->.*?<!-- load:end -->", re.S)
    doc = block.sub(lambda _: text, doc) if block.search(doc) else doc.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(doc)


def main(argv: list[str] | None = None) -> None:
    ap = OneLineParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30, help="measured seconds per route (30: the figures)")
    ap.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    ap.add_argument("--folder", type=Path, default=ROOT / "runs" / "load", help="the server's stores")
    args = ap.parse_args(argv)
    if args.seconds <= 0:
        ap.error(f"--seconds {args.seconds:g}: give a time above 0 (30: the figures; 3: a quick check)")
    if not 1 <= args.connections <= 256:
        ap.error(f"--connections {args.connections}: give 1..256")
    full = args.seconds >= 30
    load_before = [round(x, 2) for x in os.getloadavg()]
    server = Server(args.folder)
    try:
        http = server.wait_ready()
        served = served_forecasts(http)
        if served < 1000:
            raise SystemExit(f"the store holds {served} served forecasts for {STREAM}: a 1,000-row page needs 1,000")
        asked = http.post(f"/v1/streams/{STREAM}/retrain", headers={"Authorization": f"Bearer {TOKEN}"})
        if asked.status_code != 202:
            raise SystemExit(f"the retrain was refused: {asked.status_code} {asked.text}")
        model = asked.json()["model"]
        print(f"retrain {model} started; measuring {args.seconds:g} s per route", flush=True)
        routes = {}
        first = http.get(PAGE).json()["forecasts"][0]["target_time"]
        starts = [f"{d:%Y-%m-%d}" for d in pd.date_range(first[:10], periods=PAGES, freq="D")]
        if len(http.get(f"{PAGE}&start={starts[-1]}").json()["forecasts"]) != 1000:
            raise SystemExit(f"the history page from {starts[-1]} is not full: the store is too small")
        plan = {"latest": [f"/v1/streams/{STREAM}/forecast"], "history": [PAGE],
                "history_pages": [f"{PAGE}&start={d}" for d in starts]}
        for name, paths in plan.items():
            routes[name] = drive(server.url, paths, args.seconds, args.connections, server.proc.pid)
            routes[name]["verdict"] = verdict(name, routes[name])
            r = routes[name]
            print(f"{name}: {r['requests_per_s']:,.0f} requests/s, p50 {r['latency_ms']['p50']} ms, "
                  f"p99 {r['latency_ms']['p99']} ms, {r['errors']} errors; training seen in "
                  f"{sum(s == model for s in r['training_seen'])} of {len(r['training_seen'])} checks", flush=True)
        status = http.get(f"/v1/models/{model}").json()["status"]
        http.close()
    finally:
        code = server.stop()
    doc = {"measured": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seconds": args.seconds,
           "connections": args.connections, "load_before": load_before,
           "load_after": [round(x, 2) for x in os.getloadavg()], "machine": machine(),
           "store": {"served_forecasts": served},
           "retrain": {"model": model, "status_after": status}, "routes": routes, "server_exit": code}
    out = RESULTS / "load.json" if full else RESULTS / "quick" / "load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    if full:
        write_section(section(doc))
        print("updated BENCHMARKS.md (load section)")


if __name__ == "__main__":
    main()
