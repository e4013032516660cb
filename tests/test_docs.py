"""The front documents stay what a reader can scan: README short with its quickstart, BENCHMARKS.md
one section per question with distinct headings and the markers its scripts rewrite."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from coincast.config import SECTIONS, preset, validate
from coincast.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs_hooks"))
from reference import ALLOWED  # noqa: E402  (the docs' hook: what the Configuration page states)


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


def _allowed_cases(rule: str, kind) -> tuple[list, list]:
    """(values `config.validate` must accept, values it must refuse) for one row of the docs' table."""
    choices = re.findall(r"`([^`]+)`", rule)
    if choices and "," in rule and not rule.startswith((">", "0")):
        return choices, ["no-such-choice"]
    step = 1 if kind is int else 0.5
    if m := re.match(r">= ([\d.]+)", rule):
        low = kind(float(m.group(1)))
        return [low], [low - step]
    if rule.startswith("> 0"):
        return [kind(1) if kind is int else 0.1], [0]
    if rule == "0 < x < 1":
        return [0.5], [0.0, 1.0]
    if rule == "0 <= x < 1":
        return [0.0, 0.5], [1.0]
    return [], []


def test_the_settings_reference_states_what_validate_enforces():
    """The docs' Configuration page lists an allowed range or choice per setting; each one is checked here."""
    checked = 0
    for key, rule in ALLOWED.items():
        section, name = key.split(".")
        field = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)
        kind = float if "float" in str(field.type) else int if "int" in str(field.type) else str
        good, bad = _allowed_cases(rule, kind)
        for value, ok in [(v, True) for v in good] + [(v, False) for v in bad]:
            s = preset("default")
            setattr(getattr(s, section), name, value)
            if ok:
                validate(s)
            else:
                with pytest.raises(ConfigError):
                    validate(s)
            checked += 1
    assert checked >= 40  # the bounds and choices of most settings, not a vacuous pass
