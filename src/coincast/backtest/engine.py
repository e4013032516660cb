"""Walk-forward backtest: one-step forecasts for every test day from models trained before it.

The test period is cut into folds of `retrain_every` steps. Fold k's model is trained on
rows strictly before its first target (expanding: from a fixed origin; rolling: the last
`train_size` rows) and then forecasts each day of the fold from the window ending the day
before. Everything fitted (column rules, scales, early stopping, the AR baseline, the
conformal quantiles) sees only that fold's training rows.

Refits: "fresh" trains a new model from scratch for every fold (independent: run in
parallel, in `jobs` local processes or as Ray tasks: backtest/executors.py); "warm" trains
the first fold in full and then continues from the previous fold's weights for `warm_epochs`
epochs (sequential by nature).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from coincast.backtest import executors
from coincast.config import Settings, validate
from coincast.data.frame import bar_length, day_on
from coincast.errors import ConfigError, DataError
from coincast.evaluation import conformal
from coincast.models.baselines import BASELINES
from coincast.models.forecaster import MIN_TRAIN_WINDOWS, Forecaster
from coincast.models.shrinkage import MIN_RECORD, record_shrinkage, shrunk
from coincast.prep.inputs import Inputs, build_inputs
from coincast.prep.windows import first_test_row

VOL_LOOKBACK = 20  # days of returns behind the causal realised volatility column


@dataclass
class BacktestSettings:
    start: str | int | None = None  # first forecast date (or row); None: the 90/10 split of `run`
    retrain_every: int = 7  # steps per fold (weekly on daily data)
    window: str = "expanding"  # or "rolling"
    train_size: int | None = None  # rows per training span (rolling); expanding: rows before start
    refit: str = "fresh"  # or "warm"
    warm_epochs: int = 5  # epochs of each warm refit after the first full fit
    # Rows a warm refit trains on: the most recent part of its span (the older rows are in the
    # weights already); None: the whole span. Keeps a warm fold ~8x cheaper than a full fit.
    warm_span: int | None = 400
    jobs: int = 1  # parallel processes for fresh refits
    levels: tuple[float, ...] = field(default=conformal.LEVELS)
    # Conformal scores of a fold: its own calibration windows plus up to this many of the most
    # recent out-of-sample errors of earlier folds (None: all; 0: own windows only).
    calib_pool: int | None = 100
    # Where the shrinkage factor a comes from (when the model shrinks): "record" fits it on the
    # out-of-sample forecasts of the earlier folds (persistence until there are enough of
    # them); "validation" keeps each fold's own fit on its selection windows.
    shrink_from: str = "record"
    # Where fresh folds run (backtest/executors.py): "local" (a process pool of `jobs`) or "ray"
    # (tasks; a Ray instance started for the run, or the cluster at `ray_address`).
    executor: str = "local"
    ray_address: str | None = None
    threads_per_task: int = 1  # torch threads per fold (and Ray CPUs per task)

    def executor_of(self) -> executors.Executor:
        return executors.Executor(self.executor, self.jobs, self.ray_address, self.threads_per_task)

    def describe(self) -> str:
        """The refit rule in words, for the report (users were burned by this ambiguity)."""
        if self.refit == "warm":
            span = "its whole training span" if self.warm_span is None else f"the last {self.warm_span} rows of its training span"
            return (f"warm: the first fold trains a new model in full; every later fold continues from the "
                    f"previous fold's weights for {self.warm_epochs} epoch(s) on {span}")
        return "fresh: every fold trains a new model from scratch (random init, same seed) on its own training span"

    def describe_shrink(self, settings: Settings) -> str:
        """Where the shrinkage factor a comes from, in words, for the report."""
        if not settings.model.shrink:
            return "off: the network's forecast as it is"
        if self.shrink_from == "validation":
            return "fitted on each fold's own selection windows"
        return (f"fitted on the earlier folds' out-of-sample forecasts (persistence until {MIN_RECORD} "
                "are scored, and whenever they show no skill)")


@dataclass
class Plan:
    k: int
    lo: int  # first training row
    cut: int  # first target row of the fold (training rows are lo..cut-1)
    end: int  # one past the last target row


@dataclass
class BacktestResult:
    table: pd.DataFrame  # one row per test day: actual, previous, base, model, baselines, intervals, ...
    folds: pd.DataFrame  # one row per fold
    models: list[str]
    target: str
    settings: Settings
    backtest: BacktestSettings
    seconds: float
    # Test days with no forecast because their window spans a time gap (an exchange outage):
    # max_gap_steps, step, days_skipped, dates (those days).
    gaps: dict = field(default_factory=dict)
    model: Forecaster | None = None  # the last fold's model: what would forecast the next day


def min_train_rows(settings: Settings) -> int:
    return settings.data.window - 1 + MIN_TRAIN_WINDOWS + 1


def start_position(frame: pd.DataFrame, settings: Settings, bt: BacktestSettings) -> int:
    """Row of the first forecast target, checked against the data (DataError if outside)."""
    L, n = settings.data.window, len(frame)
    if bt.start is None:
        pos = first_test_row(n, L, settings.data.test_fraction)
    elif isinstance(frame.index, pd.DatetimeIndex):
        when = day_on(frame.index, bt.start, "start", "--start")
        first, last = frame.index[0], frame.index[-1]
        if not first <= when <= last:
            raise DataError(
                f"start {when.date()} is outside the data ({first.date()} to {last.date()}): "
                f"choose a --start between those dates"
            )
        pos = int(frame.index.searchsorted(when))
    else:
        try:
            pos = int(bt.start)
        except (ValueError, TypeError):
            raise ConfigError(f"start {bt.start!r} must be a row number for data without dates") from None
        if not 0 <= pos < n:
            raise DataError(f"start row {pos} is outside the data (0 to {n - 1}): choose a --start in that range")
    need = min_train_rows(settings)
    if pos < need:
        hint = f" ({frame.index[need].date()} or later)" if isinstance(frame.index, pd.DatetimeIndex) and need < n else ""
        raise DataError(
            f"only {pos} rows lie before the start, too few to train windows of {L} rows (need {need}): "
            f"choose a later --start{hint} or a shorter --window-size"
        )
    return pos


def check(frame: pd.DataFrame, settings: Settings, bt: BacktestSettings) -> int:
    """Reject unusable backtest settings before anything is trained or written; return the start row."""
    validate(settings)
    if not isinstance(bt.retrain_every, int) or bt.retrain_every < 1:
        raise ConfigError(f"retrain interval must be at least 1 step (got {bt.retrain_every}): use --retrain-every 7")
    if bt.window not in ("expanding", "rolling"):
        raise ConfigError(f"window must be 'expanding' or 'rolling' (got {bt.window!r})")
    if bt.refit not in ("fresh", "warm"):
        raise ConfigError(f"refit must be 'fresh' or 'warm' (got {bt.refit!r})")
    if bt.shrink_from not in ("record", "validation"):
        raise ConfigError(f"shrink-from must be 'record' or 'validation' (got {bt.shrink_from!r}): e.g. --shrink-from record")
    if not isinstance(bt.jobs, int) or bt.jobs < 1:
        raise ConfigError(f"jobs must be at least 1 (got {bt.jobs})")
    executors.check(bt.executor_of())
    if bt.refit == "warm" and bt.executor != "local":
        raise ConfigError("warm refits run one after the other (each continues from the previous fold): "
                          "use --refit fresh with --executor ray, or --executor local")
    if not isinstance(bt.warm_epochs, int) or bt.warm_epochs < 1:
        raise ConfigError(f"warm epochs must be at least 1 (got {bt.warm_epochs})")
    need = min_train_rows(settings)
    if bt.warm_span is not None and bt.warm_span < need:
        raise ConfigError(f"warm span {bt.warm_span} is smaller than the window plus {MIN_TRAIN_WINDOWS + 1} "
                          f"training windows: use --warm-span {need} or more")
    if bt.train_size is not None and bt.train_size < need:
        raise ConfigError(
            f"train size {bt.train_size} is smaller than the window ({settings.data.window} rows) plus "
            f"{MIN_TRAIN_WINDOWS + 1} training windows: use --train-size {need} or more"
        )
    pos = start_position(frame, settings, bt)
    if bt.train_size is not None and bt.train_size > pos:
        raise DataError(
            f"train size {bt.train_size} needs more rows than lie before the start ({pos}): "
            f"use --train-size {pos} or less, or a later --start"
        )
    n_test = len(frame) - pos
    if n_test < bt.retrain_every:
        raise ConfigError(
            f"the test period has {n_test} steps, shorter than one retrain interval ({bt.retrain_every}): "
            f"choose an earlier --start or a smaller --retrain-every"
        )
    return pos


def plan(n_rows: int, start: int, bt: BacktestSettings) -> list[Plan]:
    size = bt.train_size if bt.train_size is not None else start
    origin = start - size
    plans = []
    for k, cut in enumerate(range(start, n_rows, bt.retrain_every)):
        lo = origin if bt.window == "expanding" else cut - size
        plans.append(Plan(k, lo, cut, min(cut + bt.retrain_every, n_rows)))
    return plans


# -- one fold -------------------------------------------------------------------------------
def calibration_pool(own: np.ndarray, earlier: np.ndarray, size: int | None) -> np.ndarray:
    """The conformal scores of a fold: its model's calibration windows plus the most recent
    out-of-sample errors of the folds before it (all dated before its cut, none used to fit
    anything), the latter up to `size` (None: all of them; 0: none)."""
    recent = earlier if size is None else earlier[len(earlier) - min(size, len(earlier)) :]
    return np.concatenate([np.asarray(own, dtype=np.float64), recent])


def run_fold(
    inputs: Inputs, settings: Settings, p: Plan, init: Forecaster | None = None,
) -> tuple[dict, Forecaster]:
    """Train on rows lo..cut-1, forecast targets cut..end-1 (the network's own forecast beside
    the shrunk one), and forecast the calibration windows.

    `inputs`: built once on the full history; a fold takes rows of them (`Inputs.rows`), never
    rebuilds them, so its columns, values and declared rules are those `run` uses.
    """
    L = settings.data.window
    frame = inputs.frame
    train = inputs.rows(p.lo, p.cut)
    f = Forecaster(settings).fit(train, init=init)
    pred = f.predict(inputs.rows(p.cut - L + 1, p.end), start=frame.index[p.cut], network=True)
    # A day whose window spans a time gap (an exchange outage) gets no forecast: it is skipped
    # and counted, as `run` counts the test windows it drops.
    skipped = frame.index[p.cut : p.end].difference(pred.index)
    labels = pd.Index(f.calib_index_)  # calibration windows: nothing was selected on them
    val = f.predict(train, start=labels.min(), network=True).loc[labels] if len(labels) else pd.DataFrame(
        {"actual": [], "predicted": [], "previous": [], "network": []})
    h = f.history_
    info = {
        "fold": p.k,
        "train_first": train.index[0], "train_last": train.index[-1], "train_rows": len(train),
        "test_first": frame.index[p.cut], "test_last": frame.index[p.end - 1], "test_days": len(pred),
        "gap_skipped": len(skipped),
        "epochs_run": len(h.loss), "best_epoch": h.best_epoch, "stopped_early": h.stopped_early,
        "train_seconds": sum(x.seconds for x in getattr(f, "histories_", [h])), "calib_windows": len(val),
        "shrink": getattr(f, "shrink_", None),
    }
    calib = val[["actual", "predicted", "previous", "network"]]
    return {"pred": pred, "skipped": list(skipped), "calib": calib, "info": info}, f


def warm_refit(settings: Settings, bt: BacktestSettings, p: Plan) -> tuple[Settings, Plan]:
    """A warm refit's settings and rows: `warm_epochs` epochs on the last `warm_span` rows of its span."""
    warm = copy.deepcopy(settings)
    warm.train.epochs = bt.warm_epochs
    return warm, Plan(p.k, max(p.lo, p.cut - bt.warm_span), p.cut, p.end) if bt.warm_span else p


def fold_result(inputs: Inputs, settings: Settings, p: Plan) -> dict:
    """A fresh fold's results, its model as safetensors bytes (`Forecaster.to_bytes`): what an
    executor sends back (backtest/executors.py)."""
    r, f = run_fold(inputs, settings, p)
    return {**r, "model": f.to_bytes()}


# -- the loop -------------------------------------------------------------------------------
def walk_forward(
    data: Inputs | pd.DataFrame,
    settings: Settings,
    bt: BacktestSettings,
    target: str | None = None,
    extra: pd.DataFrame | None = None,
    log: Callable[[str], None] = lambda _: None,
    on_fold: Callable[[dict], None] = lambda _: None,
    network: bool = False,
    on_start: Callable[[int, int], None] = lambda n_folds, processes: None,
) -> BacktestResult:
    """Every fold, then one table: model, baselines, intervals, and the day's candle extras.

    `data`: the model's inputs, built once on the full history (`build_inputs`, as `run`
    builds them), or raw candles, which are built into Inputs here, once, as `settings.data`
    asks (`target` overrides its target). Folds take rows of the Inputs. `extra`: raw columns
    such as open/high/low of each target day, copied to the table for the trading simulation.
    `network`: add the network's own forecast before shrinkage as a `network` column.
    """
    settings, inputs, plans = prepare(data, settings, bt, target)
    on_start(len(plans), min(bt.jobs, len(plans)) if bt.refit == "fresh" else 1)
    t0 = time.perf_counter()
    results: list[dict] = []
    if bt.refit == "fresh" and (bt.executor == "ray" or bt.jobs > 1 and len(plans) > 1):
        for r, node in executors.run_in_order(fold_result, (inputs, settings), plans, bt.executor_of()):
            if node is not None:
                r["info"]["node"] = node  # the Ray node the fold ran on
            last = r.pop("model")  # only the last fold's model is kept
            results.append(r)
            on_fold(r["info"])
        last = Forecaster.from_bytes(last)
    else:
        if bt.refit == "warm" and bt.jobs > 1:
            log("warm refits depend on the previous fold: running them in sequence (--jobs ignored)")
        prev = None
        for p in plans:
            use_warm = bt.refit == "warm" and prev is not None
            fs, fp = warm_refit(settings, bt, p) if use_warm else (settings, p)
            r, f = run_fold(inputs, fs, fp, init=prev if use_warm else None)
            r["info"]["refit"] = "warm" if use_warm else ("full" if bt.refit == "warm" else "fresh")
            prev = f if bt.refit == "warm" else None
            last = f
            results.append(r)
            on_fold(r["info"])
    return assemble(inputs, settings, bt, plans, results, last, time.perf_counter() - t0, extra, network, log)


def prepare(data: Inputs | pd.DataFrame, settings: Settings, bt: BacktestSettings,
            target: str | None = None) -> tuple[Settings, Inputs, list[Plan]]:
    """The walk's settings (a copy, its target the inputs'), its Inputs and its folds, checked
    before anything is trained (see `walk_forward` for `data` and `target`)."""
    settings = copy.deepcopy(settings)
    if target is not None:
        settings.data.target = target
    validate(settings)
    d = settings.data
    inputs = data if isinstance(data, Inputs) else build_inputs(data, d.target, d.features, d.exog, d.exog_max_age)
    settings.data.target = inputs.target
    return settings, inputs, plan(len(inputs.frame), check(inputs.frame, settings, bt), bt)


def assemble(
    inputs: Inputs,
    settings: Settings,
    bt: BacktestSettings,
    plans: list[Plan],
    results: list[dict],
    last: Forecaster | None,
    seconds: float,
    extra: pd.DataFrame | None = None,
    network: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> BacktestResult:
    """The folds' results (`run_fold`'s, in fold order, wherever they ran) as one table: shrinkage
    from the record, baselines, conformal intervals from each fold's pool. `last`: the last
    fold's model (None: not kept), given the whole record's shrinkage."""
    frame, target = inputs.frame, inputs.target
    parts, qs, infos, earlier = [], [], [], np.empty(0)
    from_record = settings.model.shrink and bt.shrink_from == "record"
    for p, r in zip(plans, results):
        part, calib = r["pred"].rename(columns={"predicted": "model"}), r["calib"]
        part.insert(0, "fold", p.k)
        if from_record:  # a from the earlier folds' out-of-sample forecasts: targets before this fold
            record = pd.concat(parts) if parts else part.iloc[:0]
            a = record_shrinkage(record["actual"], record["network"], record["previous"])
            part["model"] = shrunk(part["network"], part["previous"], a)
            calib = calib.assign(predicted=shrunk(calib["network"], calib["previous"], a))
            r["info"]["shrink"] = a
        train = frame.iloc[p.lo : p.cut]
        window = frame.iloc[p.cut - settings.data.window + 1 : p.end]
        for cls in BASELINES:  # the baselines forecast every window: keep the model's days only
            base = cls(target, settings.data.window).fit(train).predict(window, start=frame.index[p.cut])
            part[cls.name] = base.reindex(part.index)
        own = conformal.scores(calib["actual"], calib["predicted"], calib["previous"])
        pool = calibration_pool(own, earlier, bt.calib_pool)
        q = {level: conformal.quantile(pool, level) for level in bt.levels}
        qs.append(pd.DataFrame({level: [v] * len(part) for level, v in q.items()}))
        info = {"refit": r["info"].get("refit", "fresh"), **r["info"]}
        info.update({f"q{round(100 * level)}_pct": 100 * v for level, v in q.items()}, calib_scores=len(pool))
        infos.append(info)
        parts.append(part)
        # this fold's out-of-sample errors: honest calibration for the folds after it
        earlier = np.concatenate([earlier, conformal.scores(part["actual"], part["model"], part["previous"])])
    table = pd.concat(parts)
    if from_record and last is not None:  # the last model serves the next day with the a of the whole record
        last.shrink_ = record_shrinkage(table["actual"], table["network"], table["previous"])
    if not network:
        table = table.drop(columns="network")
    if table.empty:
        raise DataError(
            "every test day's window spans a time gap: no forecast to score; choose a --start whose test "
            "period has gap-free stretches, or a larger --max-gap"
        )
    table = conformal.add_intervals(table, pd.concat(qs, ignore_index=True).set_axis(table.index))
    price = frame[target]
    table["vol20"] = price.pct_change().rolling(VOL_LOOKBACK).std().shift(1).reindex(table.index)  # known at t-1
    if extra is not None:
        for col in ("open", "high", "low"):
            if col in extra.columns:
                table[col] = extra[col].reindex(table.index)
    table.index.name = "date"
    models = ["model"] + [cls.name for cls in BASELINES]
    skipped = [d for r in results for d in r["skipped"]]
    step = bar_length(frame.index)
    gaps = {"max_gap_steps": settings.data.max_gap, "step": str(step) if step is not None else None,
            "days_skipped": len(skipped), "dates": [str(d) for d in skipped]}
    if skipped:
        log(f"{len(skipped)} test day(s) skipped: their window spans a time gap over {settings.data.max_gap} steps")
    return BacktestResult(table, pd.DataFrame(infos), models, target, settings, bt, seconds, gaps, last)


def settings_dict(bt: BacktestSettings) -> dict:
    d = asdict(bt)
    d["levels"] = list(bt.levels)
    d["refit_rule"] = bt.describe()
    return d
