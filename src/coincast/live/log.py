"""The live service's log lines, through `logging`: a timestamp and a level on each.

The service logs to the `coincast.live` logger with the stream and its clock's reading as
fields; `setup` sends every `coincast` logger to stdout as readable text

    2026-01-05 09:00:01Z INFO    [2026-01-05 09:00] btc-1d   forecast for the ... candle's close: ...

(the first time is the wall clock's, the bracketed one the service's clock: they differ on a
demo's simulated clock) or as one JSON object a line for a log shipper (`--log-format json`):
time, level, logger, stream, service_time, message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

LOGGER = logging.getLogger("coincast.live")
FORMATS = ("text", "json")


def _wall(record: logging.LogRecord) -> datetime:
    return datetime.fromtimestamp(record.created, tz=timezone.utc)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = line(getattr(record, "service_time", None), getattr(record, "stream", None), record.getMessage())
        return f"{_wall(record):%Y-%m-%d %H:%M:%S}Z {record.levelname:<7} {text}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = getattr(record, "service_time", None)
        return json.dumps({
            "time": _wall(record).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name, "stream": getattr(record, "stream", None),
            "service_time": None if when is None else when.isoformat(), "message": record.getMessage(),
        })


def setup(fmt: str = "text", stream=None) -> None:
    """Every `coincast` logger's INFO and above to `stream` (stdout) as `fmt` ('text' or 'json')."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("coincast")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def line(service_time, stream: str | None, text: str) -> str:
    """The readable line of one event, as the text format shows it after its time and level."""
    return (f"[{service_time:%Y-%m-%d %H:%M}] " if service_time is not None else "") + \
        (f"{stream:<8} " if stream else "") + text
