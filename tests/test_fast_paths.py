"""The fast paths give what their plain statements give.

Training and inference run the network through PyTorch's fused recurrent kernels (oneDNN
on CPU, cuDNN on CUDA) and forecast the next step from numpy arrays rather than pandas
frames. Each is checked here against a plain, step-by-step statement of the same thing
on a fixed seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coincast.models.bilstm import BiLSTM
from coincast.models.forecaster import Forecaster

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
