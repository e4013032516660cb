"""Atomic file writes: a crash never leaves a half-written file behind."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over the target."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    """Standard JSON: a number that is undefined or unbounded (NaN, inf) is written as null."""
    write_text(path, json.dumps(_finite(obj), indent=2, allow_nan=False, default=_jsonable) + "\n")


def _finite(x):
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if getattr(x, "shape", None) == ():  # numpy scalars
        x = x.item()
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _jsonable(x):
    if hasattr(x, "item"):  # numpy scalars
        return x.item()
    if hasattr(x, "isoformat"):
        return x.isoformat()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
