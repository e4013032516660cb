"""Typed settings, the presets and TOML loading.

`Settings` holds everything a run needs besides the data. Presets are named starting
points; command-line flags and TOML files override single fields on top of them.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from coincast.errors import ConfigError


@dataclass
class DataSettings:
    target: str | None = None  # column name or index; None: the dataset's own, else 'close'
    # None: every numeric column, as the tutorial does. Columns of the data and indicator
    # names (rsi14, macd, bb20, ...: see coincast.prep.features), computed on the raw candles.
    features: list[str] | None = None
    exog: list[str] | None = None  # daily series joined causally as inputs: fear-greed, my.csv
    exog_max_age: float = 7  # days an exogenous value carries forward before it counts as missing
    window: int = 50  # rows per window: window-1 inputs and 1 target
    test_fraction: float = 0.1  # last share of windows held out for the test
    val_fraction: float = 0.1  # share of training windows used for validation
    val_split: str = "chronological"  # or "random": the tutorial's leaky split
    # Latest share of the validation windows held out for calibration (the backtest's conformal
    # intervals) when early stopping or shrinkage select on the rest; see Forecaster.fit.
    calib_fraction: float = 0.5
    skip_last_row: bool = False  # the tutorial's loop never uses the last row as a target
    # Drop windows that span a time gap longer than this many typical steps (an exchange
    # outage in hourly bars); None keeps every window.
    max_gap: float | None = 1.5
    # First test date (YYYY-MM-DD) shared by every asset; None: the latest of the assets' own
    # last-10%-of-windows points (one asset: exactly its last 10%).
    test_start: str | None = None
    timestamps: str = "open"  # what a file's timestamps mark: the candle's "open" or its "close" time


@dataclass
class ModelSettings:
    hidden: list[int] | None = None  # None: the tutorial's (L-1, 2(L-1), L-1)
    dropout: float = 0.2
    cell: str = "lstm"  # or "gru"
    bidirectional: bool = True
    # What the network predicts: "window" is the tutorial's price relative to the window's
    # first row; "change" is the move relative to the last observed price (0 = persistence).
    target: str = "change"
    scaling: str = "revin"  # or "none": per-window standardisation of inputs and target
    # Forecast = persistence + a * (model - persistence), a in [0, 1] fitted on the
    # validation windows only (a = 0 where the model shows no skill there).
    shrink: bool = True


@dataclass
class TrainSettings:
    epochs: int = 100
    batch_size: int = 1024
    lr: float = 1e-3  # Adam's default, as in Keras
    loss: str = "mse"  # or "huber"
    early_stopping: bool = True
    patience: int = 10
    seed: int = 0
    seeds: int = 1  # average this many networks trained with seeds seed, seed+1, ...
    device: str = "auto"  # auto: CUDA, then MPS, then CPU
    precision: str = "auto"  # auto: bf16 autocast where the hardware has bf16 (AVX-512 BF16/AMX, GPUs), else fp32
    shards: int = 2  # on a CPU each batch runs as this many parts side by side, one per core (models/step.py)


@dataclass
class Settings:
    preset: str = "default"
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)

    def hidden_sizes(self) -> list[int]:
        L = self.data.window
        return list(self.model.hidden) if self.model.hidden else [L - 1, 2 * (L - 1), L - 1]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        s = cls(preset=d.get("preset", "default"))
        apply_overrides(s, {k: v for k, v in d.items() if k != "preset"})
        return s


def _tutorial() -> Settings:
    """The tutorial, exactly: shuffled training windows, random validation split, no early stop."""
    s = Settings(preset="tutorial")
    s.data.val_split = "random"
    s.data.skip_last_row = True
    s.model.target, s.model.scaling, s.model.shrink = "window", "none", False
    s.train.early_stopping = False
    return s


PRESETS = {"default": Settings, "tutorial": _tutorial}


def preset(name: str) -> Settings:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}': use one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def apply_overrides(settings: Settings, sections: dict) -> Settings:
    """Set fields from a {section: {field: value}} mapping, rejecting unknown names."""
    for section, values in sections.items():
        if section not in ("data", "model", "train"):
            raise ConfigError(f"unknown settings section '{section}': use data, model or train")
        target = getattr(settings, section)
        names = {f.name for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in names:
                raise ConfigError(
                    f"unknown setting '{section}.{key}': known are {', '.join(sorted(names))}"
                )
            setattr(target, key, value)
    return settings


def load_toml(path: str | Path, base: Settings | None = None) -> Settings:
    """Read a TOML file (or a run's config.json) with optional `preset` and [data]/[model]/[train]."""
    path = Path(path)
    try:
        text = path.read_text()
        doc = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid {path.suffix.lstrip('.').upper() or 'TOML'} ({exc}); fix the syntax") from None
    doc.pop("dataset", None)  # a run's config.json also names its dataset
    settings = preset(doc.pop("preset")) if "preset" in doc else (base or Settings())
    return apply_overrides(settings, doc)


def _as_list(value):
    """'close, rsi14' (as a TOML string or a flag) -> ['close', 'rsi14']; lists pass through."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()] or None
    return value


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"max_gap must be a number of typical steps or 'none' (got {text!r})") from None


def _is_date(value) -> bool:
    try:
        datetime.datetime.fromisoformat(str(value))
        return True
    except ValueError:
        return False


def validate(s: Settings) -> Settings:
    """Reject settings that cannot work, with the fix in the message."""
    d, m, t = s.data, s.model, s.train
    d.features, d.exog = _as_list(d.features), _as_list(d.exog)
    if isinstance(d.test_start, (datetime.date, datetime.datetime)):  # a TOML date literal
        d.test_start = d.test_start.isoformat()
    if isinstance(d.max_gap, str):  # TOML has no null: max_gap = "none"
        d.max_gap = None if d.max_gap.strip().lower() in ("none", "off") else _number(d.max_gap)
    checks = [
        (isinstance(d.window, int) and d.window >= 3, f"window must be at least 3 rows (got {d.window}): use --window 50"),
        (isinstance(t.epochs, int) and t.epochs >= 1, f"epochs must be at least 1 (got {t.epochs})"),
        (t.batch_size >= 1, f"batch size must be at least 1 (got {t.batch_size})"),
        (0 < d.test_fraction < 1, f"test fraction must be between 0 and 1 (got {d.test_fraction})"),
        (0 < d.val_fraction < 1, f"validation fraction must be between 0 and 1 (got {d.val_fraction})"),
        (0 <= d.calib_fraction < 1, f"calibration fraction must be in [0, 1) (got {d.calib_fraction})"),
        (d.val_split in ("chronological", "random"), f"val_split must be 'chronological' or 'random' (got {d.val_split!r})"),
        (m.cell in ("lstm", "gru"), f"cell must be 'lstm' or 'gru' (got {m.cell!r})"),
        (m.target in ("window", "change"), f"model target must be 'window' or 'change' (got {m.target!r})"),
        (m.scaling in ("none", "revin"), f"scaling must be 'none' or 'revin' (got {m.scaling!r})"),
        (isinstance(t.seeds, int) and t.seeds >= 1, f"seeds must be at least 1 (got {t.seeds})"),
        (0 <= m.dropout < 1, f"dropout must be in [0, 1) (got {m.dropout})"),
        (t.loss in ("mse", "huber"), f"loss must be 'mse' or 'huber' (got {t.loss!r})"),
        (t.lr > 0, f"learning rate must be positive (got {t.lr})"),
        (t.patience >= 1, f"patience must be at least 1 (got {t.patience})"),
        (t.device in ("auto", "cpu", "cuda", "mps"), f"device must be auto, cpu, cuda or mps (got {t.device!r})"),
        (t.precision in ("auto", "fp32", "bf16"), f"precision must be auto, fp32 or bf16 (got {t.precision!r})"),
        (isinstance(t.shards, int) and t.shards >= 1, f"shards must be at least 1 (got {t.shards})"),
        (all(h >= 1 for h in s.hidden_sizes()), f"hidden sizes must be positive (got {m.hidden})"),
        (d.max_gap is None or (isinstance(d.max_gap, (int, float)) and d.max_gap >= 1),
         f"max_gap is in typical steps and must be at least 1 (got {d.max_gap}): e.g. 1.5, or 'none' to keep every window"),
        (d.features is None or (isinstance(d.features, list) and len(d.features) > 0),
         "features must be a list of columns and indicators, e.g. close,rsi14,macd"),
        (d.test_start is None or _is_date(d.test_start),
         f"test start must be a date YYYY-MM-DD (got {d.test_start!r}): e.g. --test-start 2025-01-01"),
        (d.timestamps in ("open", "close"), f"timestamps must be 'open' or 'close' (got {d.timestamps!r})"),
        (d.exog is None or isinstance(d.exog, list), "exog must be a list of series, e.g. fear-greed,my_sentiment.csv"),
        (isinstance(d.exog_max_age, (int, float)) and d.exog_max_age > 0,
         f"exog_max_age must be a positive number of days (got {d.exog_max_age})"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return s
