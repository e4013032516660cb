"""`coincast evaluate`: the walk-forward skill grid (the protocol `make skill` runs) as a command,
with a tiny model on two coins and the last 8 days (two warm folds each)."""

import json

import pytest

from coincast.backtest.engine import BacktestSettings, walk_forward
from coincast.config import preset
from coincast.data import load
from coincast.evaluation import stats
from coincast.evaluation.metrics import score
from coincast.flows.backtest import load_inputs
from tests.conftest import assert_user_error, one_torch_thread, tiny, tiny_flags

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

DAYS = 8


def test_cli_evaluate_writes_one_folder_with_the_grid(cli, tmp_path):
    out = tmp_path / "runs"
    p = cli("evaluate", "--data", "btc-usd,eth-usd", "--presets", "default,tutorial", "--days", str(DAYS),
            *tiny_flags("evaluate", window=12), "--out", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    folder, = out.iterdir()
    assert {f.name for f in folder.iterdir()} == {"evaluation.json", "report.html", "skill.png"}
    doc = json.loads((folder / "evaluation.json").read_text())
    rows = doc["rows"]
    assert [(r["coin"], r["preset"]) for r in rows] == [("btc-usd", "default"), ("btc-usd", "tutorial"),
                                                        ("eth-usd", "default"), ("eth-usd", "tutorial")]
    assert all(r["days"] == DAYS and r["folds"] == 2 for r in rows)
    assert doc["meta"]["days"] == DAYS and doc["meta"]["refit"] == "warm"
    # btc-usd default's row is the warm walk-forward `coincast backtest --refit warm` runs over the last 8 days
    s = tiny("default", window=12, target="close")
    s.train.batch_size = preset("default").train.batch_size  # the command has no --batch-size: the preset's
    inputs, _ = load_inputs("btc-usd", s)
    bt = BacktestSettings(start=str(inputs.frame.index[-DAYS].date()), refit="warm")
    result = walk_forward(inputs, s, bt)
    table = result.table
    assert rows[0]["first"] == str(table.index[0].date()) and rows[0]["last"] == str(load("btc-usd").index[-1].date())
    assert rows[0]["rmse_ratio"] == pytest.approx(score(table, result.models)["model"]["rmse_ratio"], rel=1e-6)
    assert rows[0]["dm_p"] == pytest.approx(stats.dm_record(table)["p_one_sided"], rel=1e-6)
    html = (folder / "report.html").read_text()
    assert "RMSE / pers." in html and "eth-usd" in html and "data:image/png;base64" in html
    assert "eth-usd tutorial: RMSE/pers" in p.stdout


@pytest.mark.parametrize("args, words", [
    (["--presets", "default,bogus"], "unknown preset 'bogus'"),
    (["--data", "btc-usd,no-such-coin"], "no-such-coin"),
    (["--days", "100000"], "fewer than --days 100000"),
    (["--days", "0"], "days must be at least 1 (got 0)"),
    (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    (["--executor", "bogus"], "executor must be 'local' or 'ray' (got 'bogus')"),
])
def test_cli_evaluate_bad_input_is_one_line_exit_2_nothing_written(cli, tmp_path, args, words):
    out = tmp_path / "runs"
    p = cli("evaluate", "--data", "btc-usd", "--presets", "default", "--days", str(DAYS),
            *tiny_flags("evaluate", window=12), "--out", str(out), *args, cwd=tmp_path)
    assert_user_error(p, words)
    assert not out.exists() or not any(out.iterdir())
