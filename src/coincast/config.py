"""Typed settings, the presets and TOML loading.

`Settings` holds everything a run needs besides the data. Presets are named starting
points; command-line flags and TOML files override single fields on top of them.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from coincast.errors import ConfigError


@dataclass
class DataSettings:
    target: str | int | None = None  # column name or 0-based index; None: the dataset's own, else 'close'
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
    # The network's distribution head (models/risk_network.py) in the risk part of run and backtest,
    # beside the baselines; false leaves the baselines only (and saves its training, a few seconds).
    risk_head: bool = True


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
    """Set fields from a {section: {field: value}} mapping, rejecting unknown names and wrong types."""
    for section, values in sections.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown settings section '{section}': use data, model or train")
        if not isinstance(values, dict):
            raise ConfigError(
                f"'{section}' must be a table of settings (got {values!r}): write [{section}] on its own line, "
                f"then one setting per line, e.g. {_example_line(section)}"
                + ("; the dataset itself is chosen with --data" if section == "data" else "")
            )
        target = getattr(settings, section)
        names = {f.name for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in names:
                raise ConfigError(
                    f"unknown setting '{section}.{key}': known are {', '.join(sorted(names))}"
                )
            setattr(target, key, checked(section, key, value))
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


# -- types: each value against its dataclass field's annotation -------------------------------
SECTIONS = {"data": DataSettings, "model": ModelSettings, "train": TrainSettings}

# Examples for messages where the default (None) shows nothing useful.
EXAMPLES = {"data.target": "close", "data.features": ["close", "rsi14", "macd"], "data.exog": ["fear-greed"],
            "data.max_gap": 1.5, "model.hidden": [49, 98, 49]}

WANTED = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def _hints(section: str) -> dict:
    return typing.get_type_hints(SECTIONS[section])


def _toml(value) -> str:
    """A value as it is written in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _example_line(section: str) -> str:
    key = {"data": "window", "model": "cell", "train": "epochs"}[section]
    return f"{key} = {_toml(_default(section, key))}"


def _kind(value) -> str:
    for t, word in ((bool, "a true/false value"), (int, "a whole number"), (float, "a decimal number"),
                    (str, "text"), (list, "a list"), (dict, "a table")):
        if isinstance(value, t):
            return word
    return type(value).__name__


def _options(hint) -> tuple:
    """`int | None` -> (int, NoneType); `float` -> (float,)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _convert(t, value):
    """`value` as type `t` (a plain type or list[X]), or raise ValueError. Never guesses from text,
    except list fields, which take a comma-separated string as well."""
    if typing.get_origin(t) is list:
        (item,) = typing.get_args(t)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
            if item is int:  # '49,98,49'
                value = [int(v) if v.lstrip("-").isdigit() else v for v in value]
        if not isinstance(value, (list, tuple)):
            raise ValueError
        return [_convert(item, v) for v in value]
    if t is bool and isinstance(value, bool):
        return value
    if isinstance(value, bool):  # True is an int in Python, never a number here
        raise ValueError
    if t is int and isinstance(value, int):
        return value
    if t is float and isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError
        return value
    if t is str and isinstance(value, str):
        return value
    raise ValueError


def _suggestion(t, value):
    """What the user probably meant by a quoted number or word, if it parses as `t`."""
    if isinstance(value, str):
        text = value.strip().lower()
        if t is bool and text in ("true", "false"):
            return text == "true"
        try:
            if t is int and text.lstrip("-").isdigit():
                return int(text)
            if t is float:
                x = int(text) if text.lstrip("-").isdigit() else float(text)
                return x if math.isfinite(x) else None
        except ValueError:
            return None
    if t is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _describe(t) -> str:
    if typing.get_origin(t) is list:
        (item,) = typing.get_args(t)
        return f"a list of {'whole numbers' if item is int else 'names'} (or one comma-separated string)"
    return WANTED[t]


def checked(section: str, key: str, value):
    """`value` for setting `section.key`, checked against the field's annotation.

    Whole-number fields reject text, decimals and true/false; number fields take whole numbers;
    list fields take a list or a comma-separated string; `X | None` allows None. A wrong type
    is a ConfigError naming the setting and showing the line to write instead.
    """
    name = f"{section}.{key}"
    if name in PARSERS:
        value = PARSERS[name](value)
    options = _options(_hints(section)[key])
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{name} needs a value: e.g. {key} = {_toml(_default(section, key))}")
    kinds = [t for t in options if t is not type(None)]
    for t in kinds:
        try:
            return _convert(t, value)
        except ValueError:
            continue
    want = " or ".join(_describe(t) for t in kinds)
    if isinstance(value, float) and not math.isfinite(value) and float in kinds:
        want = "a finite number"
    hint = next((s for s in (_suggestion(t, value) for t in kinds) if s is not None), None)
    fix = (f"write {key} = {_toml(hint)}" + (" without quotes" if isinstance(value, str) else "")
           if hint is not None else f"e.g. {key} = {_toml(_default(section, key))}")
    raise ConfigError(f"{name} must be {want} (got {_toml(value)}, {_kind(value)}): {fix}")


def _default(section: str, key: str):
    f = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == key)
    default = f.default if f.default is not dataclasses.MISSING else None
    return EXAMPLES.get(f"{section}.{key}", default)


def _max_gap(value):
    """TOML has no null: max_gap = "none"; the command line gives text: --max-gap 1.5."""
    if not isinstance(value, str):
        return value
    if value.strip().lower() in ("none", "off"):
        return None
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"max_gap must be a number of typical steps or 'none' (got {value!r})") from None


def _date(value):
    """A TOML date literal (test_start = 2025-01-01) as the text the command line gives."""
    return value.isoformat() if isinstance(value, (datetime.date, datetime.datetime)) else value


PARSERS = {"data.max_gap": _max_gap, "data.test_start": _date}

MAX_SEED = 2**32 - 1  # numpy's seed range


def _is_date(value) -> bool:
    try:
        datetime.datetime.fromisoformat(str(value))
        return True
    except ValueError:
        return False


def validate(s: Settings) -> Settings:
    """Check every field's type (as `checked` does), then its range, with the fix in the message."""
    for section in SECTIONS:
        part = getattr(s, section)
        for f in dataclasses.fields(part):
            setattr(part, f.name, checked(section, f.name, getattr(part, f.name)))
    d, m, t = s.data, s.model, s.train
    checks = [
        (d.window >= 3, f"window must be at least 3 rows (got {d.window}): use --window 50"),
        (t.epochs >= 1, f"epochs must be at least 1 (got {t.epochs})"),
        (t.batch_size >= 1, f"batch size must be at least 1 (got {t.batch_size})"),
        (0 < d.test_fraction < 1, f"test fraction must be between 0 and 1 (got {d.test_fraction})"),
        (0 < d.val_fraction < 1, f"validation fraction must be between 0 and 1 (got {d.val_fraction})"),
        (0 <= d.calib_fraction < 1, f"calibration fraction must be in [0, 1) (got {d.calib_fraction})"),
        (d.val_split in ("chronological", "random"), f"val_split must be 'chronological' or 'random' (got {d.val_split!r})"),
        (m.cell in ("lstm", "gru"), f"cell must be 'lstm' or 'gru' (got {m.cell!r})"),
        (m.target in ("window", "change"), f"model target must be 'window' or 'change' (got {m.target!r})"),
        (m.scaling in ("none", "revin"), f"scaling must be 'none' or 'revin' (got {m.scaling!r})"),
        (t.seeds >= 1, f"seeds must be at least 1 (got {t.seeds})"),
        (0 <= t.seed and t.seed + t.seeds - 1 <= MAX_SEED,
         f"seed must be between 0 and {MAX_SEED - t.seeds + 1} (got {t.seed}): e.g. --seed 0"),
        (0 <= m.dropout < 1, f"dropout must be in [0, 1) (got {m.dropout})"),
        (t.loss in ("mse", "huber"), f"loss must be 'mse' or 'huber' (got {t.loss!r})"),
        (t.lr > 0, f"learning rate must be positive (got {t.lr})"),
        (t.patience >= 1, f"patience must be at least 1 (got {t.patience})"),
        (t.device in ("auto", "cpu", "cuda", "mps"), f"device must be auto, cpu, cuda or mps (got {t.device!r})"),
        (t.precision in ("auto", "fp32", "bf16"), f"precision must be auto, fp32 or bf16 (got {t.precision!r})"),
        (t.shards >= 1, f"shards must be at least 1 (got {t.shards})"),
        (m.hidden is None or len(m.hidden) > 0, "model.hidden is an empty list: give units per layer, e.g. hidden = [49, 98, 49]"),
        (all(h >= 1 for h in s.hidden_sizes()), f"hidden sizes must be positive (got {m.hidden})"),
        (d.max_gap is None or d.max_gap >= 1,
         f"max_gap is in typical steps and must be at least 1 (got {d.max_gap}): e.g. 1.5, or 'none' to keep every window"),
        (d.features is None or len(d.features) > 0,
         "the feature list is empty: give columns and indicators, e.g. --features close,rsi14,macd "
         "(or leave features out for every numeric column)"),
        (d.exog is None or len(d.exog) > 0, "the exog list is empty: give series, e.g. --exog fear-greed, or leave exog out"),
        (d.exog_max_age > 0, f"exog_max_age must be a positive number of days (got {d.exog_max_age})"),
        (d.test_start is None or _is_date(d.test_start),
         f"test start must be a date YYYY-MM-DD (got {d.test_start!r}): e.g. --test-start 2025-01-01"),
        (d.timestamps in ("open", "close"), f"timestamps must be 'open' or 'close' (got {d.timestamps!r})"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return s
