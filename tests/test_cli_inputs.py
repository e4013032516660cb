"""`coincast run --features/--exog/--max-gap` and several assets from the command line."""

from __future__ import annotations

import pytest

from tests.conftest import TINY_FLAGS, assert_user_error


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("exog")
    (d / "nodate.csv").write_text("value\n1\n2\n3\n")
    (d / "future.csv").write_text("date,value\n2020-01-01,1\n2999-01-01,2\n")
    (d / "old.csv").write_text("date,value\n2010-01-01,1\n2010-01-02,2\n")
    return d


@pytest.mark.parametrize(
    "args, message",
    [
        (["--features", "close,rsx14"], "unknown feature 'rsx14': use a column of the data"),
        (["--features", "close,rsi14_3"], "feature 'rsi14_3' takes 1 positive period(s), e.g. rsi14"),
        (["--exog", "nodate.csv"], "nodate.csv has no date column"),
        (["--exog", "future.csv"], "future.csv has dates in the future"),
        (["--exog", "missing.csv"], "file not found: missing.csv"),
        (["--exog", "old.csv"], "series 'old' (2010-01-01 to 2010-01-02) does not overlap the data"),
        (["--data", "btc-usd,tutorial"], "assets must share columns: tutorial has Annual Hash Growth"),
        (["--data", "btc-usd,btc-usd-1h"], "assets must share the bar length"),
        (["--data", "btc-usd,nosuch"], "unknown dataset 'nosuch'"),
        (["--max-gap", "0.5"], "max_gap is in typical steps and must be at least 1"),
        (["--max-gap", "wide"], "max_gap must be a number of typical steps or 'none'"),
        (["--features", "close,rsi999999"],
         "feature 'rsi999999' looks back 999,999 rows, more than the 10,000 allowed: use a shorter period, e.g. rsi14"),
        (["--features", "close,sma-5"],
         "feature 'sma-5': periods must be whole numbers from 1 to 10,000 joined by '_', e.g. sma50"),
        (["--features", "close,macd26_12_9"],
         "feature 'macd26_12_9': the fast period (26) must be shorter than the slow one (12), e.g. macd12_26_9"),
        (["--features", "close,sma5000"], "feature 'sma5000' looks back 5,000 rows but the data has 3,064: use a shorter period or more data"),
        (["--features", "close,rsi14,close"], "feature 'close' is listed twice: list each feature once"),
        (["--features", "close,rsi,rsi14"], "feature 'rsi14' is listed twice (as 'rsi' and 'rsi14'): list each feature once"),
        (["--exog", "fear_greed"],
         "unknown exogenous series 'fear_greed': use fear-greed or a CSV file of dates and numbers"),
    ],
)
def test_bad_inputs_are_one_line_errors(cli, bad_files, args, message):
    p = cli("run", *TINY_FLAGS, *args, "--out", "runs", cwd=bad_files)
    assert_user_error(p, message)
    assert not (bad_files / "runs").exists() or not any((bad_files / "runs").iterdir())


def test_run_with_indicators_and_fear_greed_then_predict(cli, tmp_path):
    p = cli("run", *TINY_FLAGS, "--features", "close,rsi14,macd", "--exog", "fear-greed", "--out", "runs", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = " ".join(p.stdout.split())
    assert "training the price-only model (close)" in out and "price_only" in out
    assert "Adding rsi14, macd, macd_signal, macd_hist, fear_greed" in out
    folder = next((tmp_path / "runs").iterdir())
    p = cli("predict", "--model", str(folder), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("btc-usd: next step 2026-01-06")


def test_several_assets_then_predict_each(cli, tmp_path):
    p = cli("run", *TINY_FLAGS, "--data", "ltc-usd,ada-usd", "--out", "runs", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "per asset" in p.stdout and "pooled" in p.stdout
    assert "risk baselines skipped: the risk part runs on one asset; this run has 2\n" in p.stdout
    folder = next((tmp_path / "runs").iterdir())
    p = cli("predict", "--model", str(folder), cwd=tmp_path)
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 0 and [l.split(":")[0] for l in lines if not l.startswith(" ")] == ["ltc-usd", "ada-usd"]
    assert sum(l.startswith("  risk (GARCH(1,1)-t on ") for l in lines) == 2  # each asset's own next-move range
