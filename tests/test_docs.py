"""The front documents stay what a reader can scan: README short with its quickstart, BENCHMARKS.md
one section per question with distinct headings and the markers its scripts rewrite."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def headings(text: str) -> list[str]:
    """Markdown headings outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            out.append(line.strip())
    return out


def test_benchmarks_headings_are_distinct():
    repeated = [h for h, n in Counter(headings((ROOT / "BENCHMARKS.md").read_text())).items() if n > 1]
    assert not repeated, f"BENCHMARKS.md repeats headings {repeated}: give each section its own question"


def test_benchmark_scripts_find_their_sections():
    """Each script rewrites its table between its markers: one pair each in BENCHMARKS.md."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    for name in ("speed", "skill", "risk", "load", "ray", "tune"):
        assert text.count(f"<!-- {name}:begin -->") == 1 and text.count(f"<!-- {name}:end -->") == 1, name
    history = (ROOT / "benchmarks/results/HISTORY.md").read_text()
    for name in ("risk_tuning", "risk_tuning_2021", "risk_unshipped"):
        assert history.count(f"<!-- {name}:begin -->") == 1 and history.count(f"<!-- {name}:end -->") == 1, name


def test_readme_is_a_front_page_with_the_quickstart():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    quickstart = text[text.index("## Quickstart"):]
    quickstart = quickstart[:quickstart.index("```", quickstart.index("```") + 3)]
    assert [line.split()[:2] for line in quickstart.splitlines() if line.startswith("make ")] == \
        [["make", "run"], ["make", "test"], ["make", "serve"]]
