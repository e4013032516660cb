"""The fast paths give what their plain statements give.

Training and inference run the network through PyTorch's fused recurrent kernels (oneDNN
on CPU, cuDNN on CUDA); training splits each batch into shards run side by side, in bf16
where the hardware has it, with odd layers one unit wider (models/step.py, padding.py);
the next step is forecast from numpy arrays rather than pandas frames. Each is checked
here against a plain statement of the same thing on a fixed seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coincast.config import TrainSettings
from coincast.models.bilstm import BiLSTM, run_as_is
from coincast.models.forecaster import Forecaster
from coincast.models.padding import run_even
from coincast.models.step import ShardedStep, cpu_runs_bf16_lstm
from coincast.models.training import train
from tests.conftest import tiny


def plain_lstm(x: torch.Tensor, layer: torch.nn.LSTM, reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One direction of one LSTM layer, one time step at a time. x: [B, T, F]."""
    sfx = "_l0_reverse" if reverse else "_l0"
    W, U = getattr(layer, "weight_ih" + sfx).double(), getattr(layer, "weight_hh" + sfx).double()  # [4H, F], [4H, H]
    b = (getattr(layer, "bias_ih" + sfx) + getattr(layer, "bias_hh" + sfx)).double()  # [4H]
    B, T, _ = x.shape
    h = c = torch.zeros(B, layer.hidden_size, dtype=torch.float64)  # [B, H]
    out = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        i, f, g, o = (x[:, t] @ W.T + h @ U.T + b).chunk(4, dim=1)  # [B, H] each, PyTorch's gate order
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        out[t] = h
    return torch.stack(out, dim=1), h  # [B, T, H], final state [B, H]


def plain_network(net: BiLSTM, x: torch.Tensor) -> torch.Tensor:
    """The tutorial's network (eval mode) as Keras states it: sequences between layers, final states at the end."""
    x = x.double()  # [B, T, F]
    for layer in net.layers[:-1]:
        x = torch.cat([plain_lstm(x, layer, False)[0], plain_lstm(x, layer, True)[0]], dim=-1)  # [B, T, 2H]
    last = torch.cat([plain_lstm(x, net.layers[-1], False)[1], plain_lstm(x, net.layers[-1], True)[1]], dim=-1)  # [B, 2H]
    return (last @ net.head.weight.double().T + net.head.bias.double()).squeeze(-1)  # [B]


@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # raised by torch.backends.mkldnn.flags on CPU builds
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "aten"])
def test_fused_network_equals_step_by_step_statement(onednn):
    torch.manual_seed(0)
    net = BiLSTM(5, [9, 18, 9]).eval()
    x = torch.randn(7, 12, 5)  # [B, T, F]
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=onednn):
        fast = net(x).double()
        plain = plain_network(net, x)
    assert fast.shape == (7,)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


def test_fused_network_gradients_equal_step_by_step_statement():
    """Training's backward pass through the fused kernels: same gradients as autograd through the plain loop."""
    torch.manual_seed(1)
    net = BiLSTM(3, [6, 12, 6], dropout=0.0).train()
    x, y = torch.randn(4, 8, 3), torch.randn(4)
    torch.nn.functional.mse_loss(net(x), y).backward()
    fast = {n: p.grad.double().clone() for n, p in net.named_parameters()}
    net.zero_grad()
    torch.nn.functional.mse_loss(plain_network(net, x), y.double()).backward()
    for name, p in net.named_parameters():
        torch.testing.assert_close(fast[name], p.grad.double(), atol=1e-6, rtol=1e-4, msg=name)


def test_next_step_forecast_equals_the_windowed_prediction(btc):
    """forecast_next (numpy, one window) and predict (frames, every window) agree on the same window."""
    frame = btc.iloc[-400:]
    m = Forecaster(tiny()).fit(frame.iloc[:-1])
    next_step = m.forecast_next(frame.iloc[:-1])  # inputs: the rows before the last one
    windowed = m.predict(frame).iloc[-1]  # the window whose target is the last row
    assert next_step["date"] == frame.index[-1].isoformat()
    assert next_step["last_price"] == windowed["previous"]
    np.testing.assert_allclose(next_step["predicted_price"], windowed["predicted"], rtol=1e-9)


def real_windows(btc, n: int = 600, T: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Windows of btc-usd's daily log returns (x 100) and the next return: X [n, T, 1], y [n]."""
    r = 100 * np.diff(np.log(btc["close"].to_numpy()[-(n + T + 1) :])).astype(np.float32)
    X = np.lib.stride_tricks.sliding_window_view(r[:-1], T)[:, :, None].copy()  # [n, T, 1]
    return X, r[T:]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_odd_layer_run_one_unit_wider_is_the_same_function(cell):
    """padding.run_even: same outputs, final states and parameter gradients as the layer itself."""
    torch.manual_seed(2)
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](3, 5, batch_first=True, bidirectional=True)
    x = torch.randn(4, 7, 3)  # [B, T, F]
    w_out, w_h = torch.randn(4, 7, 10), torch.randn(2, 4, 5)
    grads = []
    for run in (run_as_is, run_even):
        layer.zero_grad()
        out, h = run(layer, x)
        assert out.shape == (4, 7, 10) and h.shape == (2, 4, 5)
        ((out * w_out).sum() + (h * w_h).sum()).backward()
        grads.append((out.detach(), h.detach(), {n: p.grad.clone() for n, p in layer.named_parameters()}))
    (out1, h1, g1), (out2, h2, g2) = grads
    torch.testing.assert_close(out2, out1, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h2, h1, atol=1e-6, rtol=1e-5)
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], atol=1e-6, rtol=1e-5, msg=name)


def test_shard_gradients_add_up_to_the_batch_gradient(btc):
    """Without dropout, the shards' summed gradients are the whole batch's plain gradient."""
    X, y = (torch.as_tensor(a[:64]) for a in real_windows(btc))
    torch.manual_seed(3)
    net = BiLSTM(1, [5, 6, 5], dropout=0.0).train()
    torch.nn.functional.mse_loss(net(X), y).backward()
    plain = {n: p.grad.clone() for n, p in net.named_parameters()}
    with ShardedStep(net, torch.nn.MSELoss(), torch.device("cpu"), shards=3, threads=2) as step:
        loss = step(X, y, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert loss == pytest.approx(float(torch.nn.functional.mse_loss(net(X), y)), rel=1e-6)
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.grad, plain[name], atol=1e-6, rtol=1e-5, msg=name)


NO_BF16 = pytest.mark.skipif(not cpu_runs_bf16_lstm(), reason="this CPU cannot run LSTM layers in bf16 (no AVX-512)")


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=NO_BF16)])
def test_shards_side_by_side_train_the_same_model_as_one_after_another(btc, precision):
    """The fast path (2 threads) and the plain path (1 thread) on a fixed seed, dropout on."""
    X, y = real_windows(btc)
    settings = TrainSettings(epochs=3, batch_size=128, early_stopping=False, precision=precision)
    preds = []
    for threads in (1, 2):
        torch.manual_seed(4)
        net = BiLSTM(1, [5, 6, 5])
        train(net, X[:500], y[:500], X[500:], y[500:], settings, torch.device("cpu"), threads=threads)
        with torch.no_grad():
            preds.append(net.eval()(torch.as_tensor(X[500:])))
    torch.testing.assert_close(preds[1], preds[0], atol=1e-5, rtol=1e-4)


@NO_BF16
def test_bf16_training_reaches_the_fp32_validation_loss(btc):
    """bf16 autocast (odd layers padded) trains to a validation loss within 10% of fp32's."""
    X, y = real_windows(btc)
    final = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(5)
        net = BiLSTM(1, [5, 6, 5])
        settings = TrainSettings(epochs=8, batch_size=64, lr=3e-3, early_stopping=False, precision=precision)
        final[precision] = train(net, X[:500], y[:500], X[500:], y[500:], settings, torch.device("cpu")).val_loss[-1]
    assert final["bf16"] <= 1.10 * final["fp32"], final
