"""Forecaster: fit/predict/save/load, exact CPU reproducibility, warm starts, bad model files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from coincast.errors import ConfigError, ModelFileError
from coincast.models.bilstm import BiLSTM
from coincast.models.forecaster import Forecaster
from coincast.prep.windows import fill_zeros, make_windows
from tests.conftest import tiny


def _fit(frame, **kw):
    s = tiny(window=20)
    for k, v in kw.items():
        setattr(s.train, k, v)
    return Forecaster(s).fit(frame)


def test_bilstm_shapes_match_the_tutorial_network():
    net = BiLSTM(35, [49, 98, 49])
    assert [l.hidden_size for l in net.layers] == [49, 98, 49]
    assert [l.input_size for l in net.layers] == [35, 98, 196]
    assert net.head.in_features == 98
    assert net(torch.zeros(3, 49, 35)).shape == (3,)
    assert BiLSTM(5, [8], cell="gru", bidirectional=False)(torch.zeros(2, 9, 5)).shape == (2,)


def test_same_seed_same_predictions_on_cpu(btc):
    f = btc.iloc[:600]
    a, b = _fit(f), _fit(f)
    pa, pb = a.predict(btc.iloc[:700], start=f.index[-1]), b.predict(btc.iloc[:700], start=f.index[-1])
    np.testing.assert_array_equal(pa["predicted"].to_numpy(), pb["predicted"].to_numpy())
    assert a.history_.loss == b.history_.loss


def test_predict_covers_windows_from_start(btc):
    m = _fit(btc.iloc[:600])
    p = m.predict(btc.iloc[:700], start=btc.index[600])
    assert len(p) == 100 and p.index[0] == btc.index[600]
    np.testing.assert_array_equal(p["actual"], btc["close"].iloc[600:700])
    np.testing.assert_array_equal(p["previous"], btc["close"].iloc[599:699])
    assert np.isfinite(p["predicted"]).all()


def test_save_load_round_trip(tmp_path, btc):
    m = _fit(btc.iloc[:600])
    m.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]
    back = Forecaster.load(tmp_path)
    assert back.forecast_next(btc) == m.forecast_next(btc)
    fc = back.forecast_next(btc)
    assert fc["date"].startswith("2026-01-06") and fc["last_price"] == btc["close"].iloc[-1]


def test_bytes_round_trip_is_one_safetensors_blob(tmp_path, btc):
    from safetensors.torch import load as load_safetensors

    m = _fit(btc.iloc[:600])
    blob = m.to_bytes()
    assert set(load_safetensors(blob)) == {f"0.{k}" for k in m.modules_[0].state_dict()}  # a plain safetensors file
    back = Forecaster.from_bytes(blob)
    assert back.forecast_next(btc) == m.forecast_next(btc)
    assert back.columns_ == m.columns_ and back.shrink_ == m.shrink_


def test_early_stopping_restores_the_best_epoch(btc):
    train = btc.iloc[:600]
    m = _fit(train, epochs=8, patience=2, lr=0.05, precision="fp32")
    h = m.history_
    assert h.best_epoch == int(np.argmin(h.val_loss)) + 1
    # this seed: the validation loss is best at epoch 3 and worse at 4 and 5, where patience stops it
    assert h.stopped_early and h.best_epoch < len(h.loss) == h.best_epoch + 2
    # the validation loss of the weights the model holds now, recomputed from its validation windows
    s = m.settings
    w = make_windows(fill_zeros(train), "close", s.data.window, m.normaliser_, s.model.target, s.model.scaling)
    # early stopping sees the validation tail's earlier half; the later half only calibrates
    assert len(m.val_index_) == round(0.1 * len(w)) and m.val_index_[-1] == train.index[-1]
    val = w.take(np.isin(w.index, m.select_index_))
    assert len(val) == len(m.val_index_) - round(0.5 * len(m.val_index_)) and val.index[-1] < m.calib_index_[0]
    module = m.modules_[0].eval()
    with torch.no_grad():
        out = module(torch.as_tensor(val.X)).double().numpy()
    loss = float(np.mean((out - val.y) ** 2))
    assert loss == pytest.approx(h.val_loss[h.best_epoch - 1], rel=1e-5)  # the best epoch's weights...
    assert loss != pytest.approx(h.val_loss[-1], rel=1e-3)  # ...not the last epoch's


def test_warm_start_begins_from_the_given_weights(btc):
    first = _fit(btc.iloc[:600])
    s = tiny(window=20)
    s.train.lr = 1e-12  # a step too small to move the weights: the result is the init
    warm = Forecaster(s).fit(btc.iloc[:650], init=first)
    for k, v in first.modules_[0].state_dict().items():
        torch.testing.assert_close(warm.modules_[0].state_dict()[k], v, atol=1e-6, rtol=0)


def test_truncated_and_corrupt_model_files(tmp_path, btc):
    m = _fit(btc.iloc[:600])
    m.save(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        Forecaster.load(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="corrupt"):
        Forecaster.load(tmp_path)
    with pytest.raises(ModelFileError, match="no model in"):
        Forecaster.load(tmp_path / "elsewhere")


def test_model_columns_must_match_the_data(tmp_path, btc):
    m = _fit(btc.iloc[:600])
    with pytest.raises(ModelFileError, match="lacks \\['volume'\\]"):
        m.forecast_next(btc.drop(columns="volume"))


def test_bad_settings_are_config_errors(btc):
    s = tiny()
    s.data.window = 2
    with pytest.raises(ConfigError, match="window must be at least 3"):
        Forecaster(s).fit(btc)
    s = tiny()
    s.train.epochs = 0
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        Forecaster(s).fit(btc)


def test_model_json_is_self_describing(tmp_path, btc):
    _fit(btc.iloc[:600]).save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["columns"] == ["open", "high", "low", "close", "volume"]
    assert meta["settings"]["data"]["window"] == 20 and meta["normaliser"]["rules"] == ["ratio"] * 5


def test_zero_network_output_is_exactly_persistence(btc):
    m = _fit(btc.iloc[:600])  # default: target "change", revin scaling
    for module in m.modules_:
        torch.nn.init.zeros_(module.head.weight)
        torch.nn.init.zeros_(module.head.bias)
    p = m.predict(btc.iloc[:700], start=btc.index[600])
    np.testing.assert_array_equal(p["predicted"].to_numpy(), p["previous"].to_numpy())


def test_shrinkage_is_fitted_on_validation_windows_only(btc):
    from coincast.models.shrinkage import fit_shrinkage

    train = btc.iloc[:600]
    m = _fit(train, seed=2, precision="fp32")
    a = m.shrink_
    assert 0.0 < a < 1.0  # this seed: not clipped, so the value below pins it
    m.shrink_ = 1.0  # the network's own forecasts
    pred = m.predict(train)
    # by hand: the last 10% of the training windows (the chronological validation part), less
    # its later half, which is kept for the conformal calibration
    n_val = round(0.1 * (600 - 19))
    val = pred.iloc[-n_val : -round(0.5 * n_val)]
    assert val.index.equals(m.select_index_)
    assert fit_shrinkage(val["actual"].to_numpy(), val["predicted"].to_numpy(), val["previous"].to_numpy()) == pytest.approx(a, rel=1e-6)  # fp32 forecasts
    # fitted on every window it would differ
    every = fit_shrinkage(pred["actual"].to_numpy(), pred["predicted"].to_numpy(), pred["previous"].to_numpy())
    assert every != pytest.approx(a, rel=1e-3)
    # the test period cannot move it: fit sees only the training frame
    changed = btc.iloc[:700].copy()
    changed.iloc[600:] *= 3.0
    assert _fit(changed.iloc[:600], seed=2, precision="fp32").shrink_ == a


def test_shrinkage_moves_with_validation_rows_never_with_test_rows(btc):
    """Walk-forward folds see the whole frame: rows after a fold's training cut must not move
    its shrinkage; rows inside its validation windows must."""
    from coincast.backtest.engine import BacktestSettings, walk_forward

    raw = fill_zeros(btc.iloc[-300:])
    s = tiny(window=12, target="close", train={"seed": 1, "precision": "fp32"})
    bt = BacktestSettings(start="2025-12-24", shrink_from="validation")  # two folds: 12-24..30 and 12-31..01-05

    def folds(frame):
        return walk_forward(frame, s, bt, "close").folds

    def perturbed(first, last="2026-01-05"):  # every value of those rows moved a little, signs kept
        out = raw.copy()
        rows = (out.index >= pd.Timestamp(first, tz="UTC")) & (out.index <= pd.Timestamp(last, tz="UTC"))
        out.loc[rows] *= np.exp(np.random.default_rng(0).normal(0.0, 0.05, size=(rows.sum(), out.shape[1])))
        return out

    base = folds(raw)
    assert [str(d.date()) for d in base["train_last"]] == ["2025-12-23", "2025-12-30"]
    a = base["shrink"].tolist()
    assert 0.0 < a[1] < 1.0  # this seed: fold 1's shrinkage is not clipped
    # the last test period: no fold trains on those rows, so no shrinkage moves
    assert folds(perturbed("2025-12-31"))["shrink"].tolist() == a
    # fold 1's validation tail is 28 windows of 12 rows ending 12-30: the earlier 14 select (epoch,
    # shrinkage), the later 14 only calibrate. Rows 12-24..30 (fold 0's test days) reach only
    # fold 1's calibration windows (selection inputs end 12-15): no shrinkage moves.
    assert folds(perturbed("2025-12-24", "2025-12-30"))["shrink"].tolist() == a
    # rows 12-10..15 are inputs of fold 1's selection windows and of neither fold's training windows
    # (fold 0's selection inputs end 12-08): fold 1's shrinkage moves, fold 0's does not
    moved = folds(perturbed("2025-12-10", "2025-12-15"))
    assert moved["shrink"].iloc[0] == a[0] and moved["shrink"].iloc[1] != pytest.approx(a[1], rel=1e-3)


def test_fit_shrinkage_by_hand():
    from coincast.models.shrinkage import fit_shrinkage

    prev = np.array([100.0, 100.0, 100.0])
    actual = np.array([101.0, 99.0, 102.0])  # moves +1%, -1%, +2%
    assert fit_shrinkage(actual, prev + np.array([2.0, -2.0, 4.0]), prev) == pytest.approx(0.5)
    assert fit_shrinkage(actual, prev - np.array([1.0, -1.0, 2.0]), prev) == 0.0  # anti-skill: persistence
    assert fit_shrinkage(actual, prev, prev) == 0.0


def test_seed_averaging_saves_and_loads_every_network(tmp_path, btc):
    s = tiny(window=20)
    s.train.seeds = 2
    m = Forecaster(s).fit(btc.iloc[:600])
    assert len(m.modules_) == 2
    m.save(tmp_path)
    back = Forecaster.load(tmp_path)
    assert len(back.modules_) == 2 and back.forecast_next(btc) == m.forecast_next(btc)
