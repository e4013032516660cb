"""Model inputs from raw candles: chosen columns, indicators and exogenous series.

`build_inputs` is the one place that turns a raw frame into the columns the network sees,
so a saved model can redo it on fresh raw candles (`coincast predict`). Indicators are
computed on the whole frame given (they look only backwards; recursive ones such as EMA
depend on the first row, so always hand it the full history), exogenous series are joined
causally (coincast.data.exogenous), and rows where an indicator is still warming up or no
exogenous value is known yet are dropped, never filled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from coincast.config import Settings, validate
from coincast.data.frame import resolve_column, select_columns
from coincast.errors import CoincastError, DataError
from coincast.prep.windows import fill_zeros


@dataclass
class Inputs:
    """The model's input frame and where each of its columns came from."""

    frame: pd.DataFrame  # target column first unless listed elsewhere; zeros filled
    target: str
    plain: list[str]  # columns taken from the data as they are (target included)
    indicators: list[str] = field(default_factory=list)  # computed columns
    exogenous: list[str] = field(default_factory=list)  # joined series' columns
    declared: dict[str, str] = field(default_factory=dict)  # normalisation of computed/joined columns
    dropped: dict[str, int] = field(default_factory=dict)  # leading/trailing rows dropped, by reason

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def index(self) -> pd.Index:
        return self.frame.index

    def rows(self, start: int | None = None, stop: int | None = None) -> "Inputs":
        """Rows start..stop-1 (positions) of the built frame, with the same columns and declared rules.

        The way to cut a fold or a split: the values are those computed on the full history
        (indicators are never recomputed on a slice, nothing is filled again).
        """
        return dataclasses.replace(self, frame=self.frame.iloc[start:stop])


def validated(settings: Settings) -> Settings:
    """`config.validate`, then the feature list parsed without the data (indicator periods,
    nothing listed twice), so a mistake surfaces before any data is read or anything written."""
    settings = validate(settings)
    if settings.data.features is not None:
        from coincast.prep.features import (
            check_spec,  # TA-Lib loads only when features are asked for
        )

        check_spec(settings.data.features)
    return settings


def uses_extras(features: list[str] | None, exog: list[str] | None, columns) -> bool:
    """True when the inputs need more than columns of the data (an indicator or a series)."""
    return bool(exog) or any(not _is_column(columns, f) for f in (features or []))


def _is_column(columns, key) -> bool:
    try:
        resolve_column(pd.DataFrame(columns=list(columns)), key)
        return True
    except CoincastError:
        return False


def build_inputs(
    raw: pd.DataFrame, target, features: list[str] | None, exog: list[str] | None = None, max_age_days: float = 7,
    read_series: Callable[[str], pd.DataFrame] | None = None,
) -> Inputs:
    """The input frame for `features` (data columns and indicator names) plus `exog` series.

    `read_series(spec)`: how an exogenous series is read (default: the bundled name or file;
    the look-ahead audit passes perturbed copies).

    Only data columns: exactly the columns chosen (the tutorial's behaviour). Otherwise the
    order is: target, the other data columns listed, indicator outputs, exogenous columns.
    """
    raw = fill_zeros(raw)
    if not uses_extras(features, exog, raw.columns):
        frame, name = select_columns(raw, target, features)
        return Inputs(frame, name, list(frame.columns))
    from coincast.data.exogenous import (
        join_exogenous,  # reads files: only when asked for
    )
    from coincast.prep.features import add_features, normalisation

    name = select_columns(raw, target, None)[1]
    parts, declared, dropped = [], {}, {}
    exog_frame = join_exogenous(raw[[]], exog, max_age_days, read_series) if exog else pd.DataFrame(index=raw.index)
    clash = [c for c in exog_frame.columns if c in raw.columns]
    if clash:
        raise DataError(f"exogenous column(s) {', '.join(clash)} clash with columns of the data; rename the series file")
    tokens = [f for f in (features or []) if str(f).strip().lower() not in exog_frame.columns]
    plain = list(dict.fromkeys([name] + [resolve_column(raw, f) for f in tokens if _is_column(raw.columns, f)]))
    computed = [f for f in tokens if not _is_column(raw.columns, f)]
    parts.append(raw[plain])
    indicators: list[str] = []
    if computed:
        ind = add_features(raw, computed)
        indicators = list(ind.columns)
        declared.update(ind.attrs["normalisation"])
        dropped["indicator warm-up"] = len(raw) - len(ind)
        parts.append(ind)
    if exog:
        declared.update({c: normalisation(c) for c in exog_frame.columns})
        dropped["outside the exogenous dates"] = int(exog_frame.attrs.get("exogenous_dropped", 0))
        parts.append(exog_frame)
    frame = pd.concat(parts, axis=1, join="inner")  # rows every part defines (contiguous)
    if frame.empty:
        raise DataError(
            "no row has every input defined (indicator warm-up and the exogenous series' dates do not "
            "overlap); use data from the same period or fewer inputs"
        )
    dropped = {"in all": len(raw) - len(frame), **dropped}  # the reasons overlap: each counts alone
    return Inputs(frame, name, plain, indicators, list(exog_frame.columns), declared, dropped)
