"""Settings types come from the dataclass annotations: each value is checked, with the setting named."""

from __future__ import annotations

import pytest

from coincast.config import Settings, apply_overrides, checked, validate
from coincast.errors import ConfigError
from coincast.prep.inputs import validated


@pytest.mark.parametrize("section, key, value, expected", [
    ("train", "batch_size", 64, 64),
    ("train", "lr", 1, 1),  # a whole number is a number
    ("data", "max_gap", None, None),  # float | None
    ("data", "max_gap", "none", None),  # TOML has no null
    ("data", "max_gap", "2", 2.0),  # the command line gives text
    ("data", "features", "close, rsi14", ["close", "rsi14"]),  # a list or a comma-separated string
    ("data", "features", ["close", "rsi14"], ["close", "rsi14"]),
    ("model", "hidden", "49,98,49", [49, 98, 49]),
    ("model", "hidden", None, None),
    ("data", "target", 3, 3),  # a column name or index
    ("model", "bidirectional", False, False),
])
def test_values_of_the_declared_type_pass(section, key, value, expected):
    assert checked(section, key, value) == expected


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "batch_size", "64", 'train.batch_size must be a whole number (got "64", text): write batch_size = 64 without quotes'),
    ("train", "batch_size", 64.0, "train.batch_size must be a whole number (got 64.0, a decimal number): write batch_size = 64"),
    ("train", "epochs", True, "train.epochs must be a whole number (got true, a true/false value): e.g. epochs = 100"),
    ("train", "lr", False, "train.lr must be a number (got false, a true/false value): e.g. lr = 0.001"),
    ("train", "lr", float("nan"), "train.lr must be a finite number (got nan, a decimal number): e.g. lr = 0.001"),
    ("model", "bidirectional", 1, "model.bidirectional must be true or false (got 1, a whole number): e.g. bidirectional = true"),
    ("model", "cell", None, 'model.cell needs a value: e.g. cell = "lstm"'),
    ("model", "hidden", [4.5], "model.hidden must be a list of whole numbers (or one comma-separated string) "
                               "(got [4.5], a list): e.g. hidden = [49, 98, 49]"),
    ("data", "exog", 5, 'data.exog must be a list of names (or one comma-separated string) (got 5, a whole number): '
                        'e.g. exog = ["fear-greed"]'),
])
def test_wrong_types_name_the_setting_and_the_fix(section, key, value, message):
    with pytest.raises(ConfigError) as exc:
        checked(section, key, value)
    assert str(exc.value) == message


def test_overrides_and_validate_check_types_alike():
    with pytest.raises(ConfigError, match="train.seeds must be a whole number"):
        apply_overrides(Settings(), {"train": {"seeds": "2"}})
    s = Settings()
    s.train.seeds = "2"  # set by hand through the API: validate catches it too
    with pytest.raises(ConfigError, match="train.seeds must be a whole number"):
        validate(s)
    with pytest.raises(ConfigError, match="'train' must be a table of settings"):
        apply_overrides(Settings(), {"train": 5})


def test_feature_list_checked_before_any_data():
    s = Settings()
    s.data.features = ["close", "ema", "ema20"]
    with pytest.raises(ConfigError, match=r"feature 'ema20' is listed twice \(as 'ema' and 'ema20'\)"):
        validated(s)
    s.data.features = ["close", "macd12_26_9", "macd"]
    with pytest.raises(ConfigError, match="feature 'macd' is listed twice"):
        validated(s)
    s.data.features = ["close", "rsi0"]
    with pytest.raises(ConfigError, match=r"feature 'rsi0' takes 1 positive period\(s\), e.g. rsi14"):
        validated(s)
    s.data.features = ["Close", "rsi7", "rsi14", "macd5_35_5"]  # different periods are different features
    assert validated(s).data.features == ["Close", "rsi7", "rsi14", "macd5_35_5"]
