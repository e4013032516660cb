"""Options that `coincast run` and `coincast backtest` (and `audit`, `predict`) share, and the settings they build.

Each option is declared once here (name, type, help) and used as a parameter annotation
in both commands, so the two never drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coincast.config import Settings, apply_overrides, load_toml
from coincast.config import preset as get_preset
from coincast.errors import ConfigError

Preset = Annotated[str, typer.Option(help="default (leak-safe) or tutorial (the original, exactly).")]
Config = Annotated[Optional[Path], typer.Option(help="TOML file with \\[data], \\[model], \\[train] tables.")]
Target = Annotated[Optional[str], typer.Option(help="Column to predict, by name or 0-based index.")]
Features = Annotated[Optional[str], typer.Option(
    help="Comma-separated input columns and indicators, e.g. close,rsi14,macd,bb20,atr14 (default: all numeric columns).")]
Exog = Annotated[Optional[str], typer.Option(
    help="Comma-separated daily series joined causally as inputs: fear-greed or CSV files (date + numbers).")]
Epochs = Annotated[Optional[int], typer.Option(help="Training epochs (of a full fit).")]
Hidden = Annotated[Optional[str], typer.Option(help="Units per layer, e.g. 49,98,49.")]
Cell = Annotated[Optional[str], typer.Option(help="lstm or gru.")]
Precision = Annotated[Optional[str], typer.Option(
    help="Training arithmetic: auto (bf16 where the hardware has it, else fp32), fp32 or bf16.")]
ModelTarget = Annotated[Optional[str], typer.Option(
    help="window (the tutorial's) or change (relative to the last price).")]
RiskHead = Annotated[Optional[bool], typer.Option(
    "--risk-head/--no-risk-head", help="The network's distribution head beside the risk baselines (default: on; it trains for a few seconds).")]
Seed = Annotated[Optional[int], typer.Option(help="One seed for Python, numpy and torch.")]
TestStart = Annotated[Optional[str], typer.Option(
    help="First test date (YYYY-MM-DD), shared by every asset (default: the last 10% of windows; several assets: "
         "the latest of their own 10% points).")]
Timestamps = Annotated[Optional[str], typer.Option(
    help="What a file's timestamps mark: open (default: each candle's open time) or close (its close time; "
         "converted to open = close - bar length).")]
ExecutorKind = Annotated[str, typer.Option(
    "--executor", help="Where independent jobs run: local (processes on this machine) or ray (Ray tasks; needs coincast\\[ray]).")]
RayAddress = Annotated[Optional[str], typer.Option(
    help="With --executor ray: a running cluster, auto or HOST:PORT (default: a Ray instance started for this run on 127.0.0.1).")]
ThreadsPerTask = Annotated[int, typer.Option(help="Torch threads per job (and Ray CPUs per task).")]
Intraday = Annotated[Optional[str], typer.Option(
    help="Hourly candles of the same market for the risk models: a bundled name (btc-usd-1h), a CSV/Parquet path "
         "(read like --data, --timestamps included), store:EXCHANGE/SYMBOL/1h, or none (default: the data's hourly "
         "companion where it has one: btc-usd -> btc-usd-1h, store:EX/SYM/1d -> store:EX/SYM/1h if the store holds it).")]
OutDir = Annotated[Path, typer.Option("--out", help="Folder that receives the run folder.")]
Quiet = Annotated[bool, typer.Option(help="No progress bar.")]


def settings(preset: str, config: Optional[Path], **flags) -> Settings:
    """Preset, then TOML/JSON config file, then single flags (section__name=value): later wins."""
    s = load_toml(config, get_preset(preset)) if config else get_preset(preset)
    sections: dict[str, dict] = {"data": {}, "model": {}, "train": {}}
    for key, value in flags.items():
        if value is not None:
            section, name = key.split("__")
            sections[section][name] = value
    return apply_overrides(s, sections)


def csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def hidden(value: Optional[str]) -> Optional[list[int]]:
    try:
        return [int(h) for h in csv(value)] if value else None
    except ValueError:
        raise ConfigError(f"hidden sizes must be comma-separated integers (got {value!r}): e.g. --hidden 49,98,49") from None


def overrides(window: Optional[int], epochs: Optional[int], hidden_units: Optional[str]) -> dict:
    """--window-size, --epochs and --hidden as settings overrides {section: {field: value}}, only those given."""
    given = {"data": {"window": window}, "train": {"epochs": epochs}, "model": {"hidden": hidden(hidden_units)}}
    given = {k: {n: v for n, v in d.items() if v is not None} for k, d in given.items()}
    return {k: d for k, d in given.items() if d}
