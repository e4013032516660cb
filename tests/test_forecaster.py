"""Forecaster: fit/predict/save/load, exact CPU reproducibility, warm starts, bad model files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from coincast.errors import ConfigError, ModelFileError
from coincast.models.bilstm import BiLSTM
from coincast.models.forecaster import Forecaster
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
    assert fc["date"].startswith("2026-01-07") and fc["last_price"] == btc["close"].iloc[-1]


def test_early_stopping_restores_the_best_epoch(btc):
    m = _fit(btc.iloc[:600], epochs=8, patience=2, lr=0.05)
    h = m.history_
    assert h.best_epoch == int(np.argmin(h.val_loss)) + 1
    if h.stopped_early:
        assert len(h.loss) == h.best_epoch + 2


def test_warm_start_begins_from_the_given_weights(btc):
    first = _fit(btc.iloc[:600])
    s = tiny(window=20)
    s.train.lr = 1e-12  # a step too small to move the weights: the result is the init
    warm = Forecaster(s).fit(btc.iloc[:650], init=first)
    for k, v in first.module_.state_dict().items():
        torch.testing.assert_close(warm.module_.state_dict()[k], v, atol=1e-6, rtol=0)


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
