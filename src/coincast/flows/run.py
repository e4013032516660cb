"""`run()`: the whole flow, data to report, as one call shared by the CLI and the API.

source -> frame -> inputs (indicators, exogenous series) -> windows -> model -> forecast
table -> metrics (and the risk models' scores, flows/run_risk.py) -> run folder. Everything
the user can get wrong is checked before training starts, and the run folder is built
under a temporary name and renamed at the end, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from coincast.config import Settings
from coincast.data.datasets import default_target, load, split_spec
from coincast.data.frame import bar_length
from coincast.data.intraday import resolve as resolve_intraday
from coincast.errors import DataError
from coincast.evaluation import assets
from coincast.evaluation.compare import PRICE_ONLY, compare, relative
from coincast.evaluation.metrics import score, verdict
from coincast.flows.backtest_risk import RiskPart
from coincast.flows.run_risk import quantile_columns, run_risk
from coincast.models.baselines import BASELINES
from coincast.models.forecaster import MIN_TRAIN_WINDOWS, Forecaster
from coincast.prep.inputs import Inputs, validated
from coincast.prep.windows import first_test_row
from coincast.report.run_folder import final_name, staging_folder, write_run


@dataclass
class RunResult:
    folder: Path
    metrics: dict  # forecast name -> metric name -> value (pooled over assets when several)
    forecast: pd.DataFrame  # with an `asset` column when several assets
    forecaster: Forecaster
    verdict: str
    shapes: dict
    per_asset: dict = field(default_factory=dict)  # asset -> metrics, when several assets
    comparison: dict | None = None  # extra inputs vs price-only (evaluation.compare), when used
    price_only: Forecaster | None = None
    gaps: dict = field(default_factory=dict)  # windows dropped because they span a time gap
    inputs: dict = field(default_factory=dict)  # input columns by origin, rows dropped
    split: dict = field(default_factory=dict)  # the test start all assets share; each asset's target dates
    risk: RiskPart | None = None  # the risk models over the test days (flows/run_risk.py), or why they were skipped
    intraday: dict = field(default_factory=dict)  # the hourly series the risk models were given (data/intraday.py)


@dataclass
class Prepared:
    """Everything checked before training: each asset's raw candles, model inputs and cut."""

    raws: dict[str, pd.DataFrame]
    inputs: dict[str, Inputs]
    cuts: dict[str, int]  # position, in each asset's inputs, of its first test target
    cut_date: pd.Timestamp | None = None  # the first test date all assets share (None: no dates)
    rule: str = ""  # how the cut was chosen, in words

    @property
    def first(self) -> Inputs:
        return next(iter(self.inputs.values()))


def split_point(n_rows: int, settings: Settings) -> int:
    """Row of the first test target: the tutorial's round(0.9 * windows) training windows."""
    L = settings.data.window
    pos = first_test_row(n_rows, L, settings.data.test_fraction)
    if n_rows - pos < 2 or pos - L + 1 < MIN_TRAIN_WINDOWS:
        need = L - 1 + max(MIN_TRAIN_WINDOWS + 2, int(2 / settings.data.test_fraction) + 1)
        raise DataError(
            f"{n_rows} rows are too few for windows of {L} plus a usable test set: give at least "
            f"{need} rows, or a shorter --window"
        )
    return pos


def prepare(data: str | Path, settings: Settings) -> Prepared:
    """Load every asset, build its inputs and find the test cut; every user mistake surfaces here."""
    assets = split_spec(data)
    raws = {}
    for asset in assets:
        raw = load(asset, timestamps=settings.data.timestamps)
        raws[asset] = raw.iloc[:-1] if settings.data.skip_last_row else raw
    first_asset = assets[0]
    for asset, raw in raws.items():
        _same_columns(asset, list(raw.columns), first_asset, list(raws[first_asset].columns))
    probe = Forecaster(settings)
    inputs = {asset: probe.inputs(raw) for asset, raw in raws.items()}
    columns, step = list(inputs[first_asset].frame.columns), bar_length(inputs[first_asset].frame.index)
    for asset, b in inputs.items():
        _same_columns(asset, list(b.frame.columns), first_asset, columns)
        if bar_length(b.frame.index) != step:
            raise DataError(
                f"assets must share the bar length: {asset} has {bar_length(b.frame.index)} bars, {first_asset} "
                f"{step}; train each timeframe on its own"
            )
    cut_date, rule = common_cut(inputs, settings)
    cuts = {}
    for asset, b in inputs.items():
        if cut_date is None:  # one asset without dates: the row rule alone
            cuts[asset] = split_point(len(b.frame), settings)
        else:
            cuts[asset] = _cut_at(asset, b.frame.index, cut_date, rule, settings, several=len(inputs) > 1)
    return Prepared(raws, inputs, cuts, cut_date, rule)


TEST_START_RULE = "--test-start"
LATEST_RULE = "the latest of the assets' own last-10%-of-windows points"


def common_cut(inputs: dict[str, Inputs], settings: Settings) -> tuple[pd.Timestamp | None, str]:
    """(first test date every asset shares, the rule that chose it); (None, rule) for one asset without dates.

    Several assets are cut at one date, so no asset trains on a day another asset is tested
    on: `data.test_start` when given, else the latest of the per-asset split points (each
    asset keeps at least its own 90% of windows for training).
    """
    undated = [a for a, b in inputs.items() if not isinstance(b.frame.index, pd.DatetimeIndex)]
    start = settings.data.test_start
    if start is not None:
        if undated:
            raise DataError(
                f"--test-start needs dated rows but {undated[0]} has no date column; "
                "drop --test-start (the last 10% of windows is tested) or add a date column"
            )
        when = pd.Timestamp(start)
        return (when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")), TEST_START_RULE
    frac = settings.data.test_fraction
    if len(inputs) == 1:
        b = next(iter(inputs.values()))
        rule = f"the last {frac:.0%} of windows"
        return (None if undated else b.frame.index[split_point(len(b.frame), settings)]), rule
    if undated:
        raise DataError(
            f"several assets share one test start date, but {undated[0]} has no date column: "
            "give every asset a date column, or run it on its own"
        )
    points = {}
    for asset, b in inputs.items():
        try:
            points[asset] = b.frame.index[split_point(len(b.frame), settings)]
        except DataError as exc:
            raise DataError(f"{asset}: {exc}") from None
    return max(points.values()), LATEST_RULE


def _cut_at(asset: str, index: pd.DatetimeIndex, when: pd.Timestamp, rule: str, settings: Settings,
            several: bool) -> int:
    """Position of the first target on or after `when` in one asset's inputs, with enough windows on each side."""
    L, name = settings.data.window, f"{asset}: " if several else ""
    day = when.date() if when == when.normalize() else when
    if rule == TEST_START_RULE and not index[0] < when <= index[-1]:
        raise DataError(
            f"{name}--test-start {day} is outside the data ({index[0].date()} to {index[-1].date()}): "
            "choose a date between those"
        )
    pos = int(index.searchsorted(when))
    n_train, n_test = pos - L + 1, len(index) - pos
    if n_train < MIN_TRAIN_WINDOWS:
        need = index[min(MIN_TRAIN_WINDOWS + L - 1, len(index) - 1)].date()
        raise DataError(
            f"{name}only {max(n_train, 0)} training windows of {L} rows before the test start {day} (need "
            f"{MIN_TRAIN_WINDOWS}): choose a --test-start on or after {need}, a shorter --window"
            + (f", or leave {asset} out" if several else "")
        )
    if n_test < 2:
        fix = "choose an earlier --test-start" if rule == TEST_START_RULE else f"give {asset} data up to the other assets' end"
        raise DataError(
            f"{name}only {n_test} test windows on or after the test start {day} (its data ends "
            f"{index[-1].date()}): {fix}" + (f", or leave {asset} out" if several else "")
        )
    return pos


def split_record(prep: Prepared, window: int) -> dict:
    """The cut as metrics.json records it: the shared test start, its rule, each asset's target dates.

    "train_val" spans the targets of the training windows, validation included (the last
    `val_fraction` of them); "test" the forecast targets.
    """
    def span(labels):
        return [str(labels[0]), str(labels[-1])]

    return {
        "test_start": str(prep.cut_date) if prep.cut_date is not None else None,
        "rule": prep.rule,
        "assets": {a: {"train_val": span(b.frame.index[window - 1 : prep.cuts[a]]),
                       "test": span(b.frame.index[prep.cuts[a] :])} for a, b in prep.inputs.items()},
    }


def _same_columns(asset: str, columns: list[str], first_asset: str, first: list[str]) -> None:
    if columns != first:
        def shown(cols):
            return ", ".join(cols[:8]) + (", ..." if len(cols) > 8 else "")

        raise DataError(
            f"assets must share columns: {asset} has {shown(columns)} but {first_asset} has {shown(first)}; "
            "use assets with the same columns (OHLCV candles), or list common ones with --features"
        )


def _one(frames: dict[str, pd.DataFrame]):
    """A single asset's frame as it is (the one-asset path stays as before), else the dict."""
    return next(iter(frames.values())) if len(frames) == 1 else frames


def price_only_settings(settings: Settings, plain: list[str]) -> Settings:
    """The same settings on the data's own columns alone: no indicators, no exogenous series."""
    s = copy.deepcopy(settings)
    s.data.features, s.data.exog = list(plain), None
    return s


def run(
    data: str | Path = "btc-usd",
    settings: Settings | None = None,
    runs_dir: str | Path = "runs",
    progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
    intraday: str | Path | None = None,
) -> RunResult:
    """Train on the first 90% of windows (or those before `data.test_start`), forecast the
    rest, score against baselines, save.

    `intraday`: the hourly candles the risk models may use, as --intraday gives them (a bundled name,
    a path, a store reference or "none"; None: the data's hourly companion where it has one,
    data/intraday.py), checked before training and recorded in metrics.json's `intraday`.

    `data` may name several assets ('btc-usd,eth-usd'): one network learns from all their
    windows and all are tested from one shared date (`common_cut`). With indicators or exogenous series
    among the inputs, the same model is also trained on the price-only inputs and compared.
    """
    settings = validated(copy.deepcopy(settings) if settings else Settings())
    if settings.data.target is None:
        settings.data.target = default_target(split_spec(data)[0])
    prep = prepare(data, settings)
    hourly = resolve_intraday(intraday, prep.raws, settings.data.timestamps)
    first = prep.first
    target, L = first.target, settings.data.window
    extras = first.indicators + first.exogenous
    runs_dir = Path(runs_dir)
    staging = staging_folder(runs_dir)
    try:
        train = {a: prep.raws[a].loc[: b.frame.index[prep.cuts[a] - 1]] for a, b in prep.inputs.items()}
        forecaster = Forecaster(settings).fit(_one(train), progress=progress)
        price_only, aligned = None, {}
        if extras:
            log(f"training the price-only model ({', '.join(first.plain)}) on the same windows, for comparison")
            aligned = {a: prep.raws[a].loc[b.frame.index] for a, b in prep.inputs.items()}  # same rows
            price_only = Forecaster(price_only_settings(settings, first.plain)).fit(
                _one({a: f.iloc[: prep.cuts[a]] for a, f in aligned.items()}), progress=progress)
        tables, test_gaps = {}, 0
        for asset, b in prep.inputs.items():
            start = b.frame.index[prep.cuts[asset]]
            t = forecaster.predict(prep.raws[asset], start=start).rename(columns={"predicted": "model"})
            test_gaps += t.attrs.get("gap_dropped", 0)
            if price_only is not None:
                t[PRICE_ONLY] = price_only.predict(aligned[asset], start=start)["predicted"]
            for cls in BASELINES:
                t[cls.name] = cls(target, L).fit(b.frame.iloc[: prep.cuts[asset]]).predict(b.frame, start=start)
            tables[asset] = t
        models = ["model"] + ([PRICE_ONLY] if price_only is not None else []) + [cls.name for cls in BASELINES]
        if len(tables) == 1:
            table, per_asset = _one(tables), {}
            metrics = score(table, models)
            comparable = table
        else:
            table = assets.pool(tables)
            metrics, per_asset = assets.scores(tables, models)
            comparable = relative(table)
        comparison = compare(comparable, extras, first.plain) if price_only is not None else None
        sentence = verdict(metrics)
        # the risk models over the same test days, fitted once before them (skipped, with the reason, where they do not apply)
        risk = run_risk(prep.raws, table.index, settings.model.risk_head, hourly.frame)
        columns, note = quantile_columns(risk, table)
        if columns is not None:  # forecast.csv's risk_q<level> columns: the next close's quantiles
            table = pd.concat([table, columns], axis=1)
            risk.summary["forecast_columns"] = note
        shapes = {
            "train": list(forecaster.train_shape_),
            "test": [len(table), L - 1, len(forecaster.columns_)],
            "target_column": forecaster.columns_.index(target),
            "target": target,
        }
        gaps = {"max_gap_steps": settings.data.max_gap, "step": str(forecaster.step_),
                "train_windows_dropped": forecaster.gap_dropped_, "test_windows_dropped": test_gaps}
        inputs = {"columns": forecaster.columns_, "plain": first.plain, "indicators": first.indicators,
                  "exogenous": first.exogenous, "rows_dropped": {a: b.dropped for a, b in prep.inputs.items()}}
        log(f"windows: train {tuple(shapes['train'])}, test {tuple(shapes['test'])}, "
            f"target column {shapes['target_column']} '{target}'")
        if gaps["train_windows_dropped"] or test_gaps:
            log(f"windows dropped because they span a time gap over {settings.data.max_gap} steps: "
                f"{gaps['train_windows_dropped']} train, {test_gaps} test")
        result = RunResult(staging, metrics, table, forecaster, sentence, shapes, per_asset,
                           comparison, price_only, gaps, inputs, split_record(prep, L), risk, hourly.record())
        write_run(staging, data, settings, result)
        folder = final_name(runs_dir, data, settings.preset)
        staging.rename(folder)
        result.folder = folder
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result
