"""The machine a figure was measured on, as run folders and benchmarks record it beside the figure."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (e.g. "AMD EPYC"), from /proc/cpuinfo; elsewhere what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """The CPU model and the cores this process may use, e.g. "AMD EPYC, 2 cores"."""
    return f"{cpu_model()}, {os.cpu_count()} cores"
