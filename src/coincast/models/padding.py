"""Recurrent layers with an odd hidden size, run as the next even size: same function, faster in bf16.

oneDNN packs bf16 values in pairs along the reduction dimension, and a layer of 49 units
(the tutorial's first and last) falls off its AMX kernels and trains markedly slower than
the same layer with 50 units ("Speed" in benchmarks/results/HISTORY.md). So the bf16 path
runs each odd layer with one more
unit whose weights are all zero. That unit's gates are constant, its cell and output stay
exactly 0 from the zero initial state, and it feeds nothing (its column of the recurrent
weights is zero too): the real units compute what they compute without it. The padded
weights are built from the layer's own parameters on every call, so the parameters get
exactly their gradients (autograd slices the padding back off) and stay the layer's own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coincast.models.bilstm import run_as_is


def _pad_units(w: torch.Tensor, H: int, gates: int) -> torch.Tensor:
    """[gates*H, ...] -> [gates*(H+1), ...]: one zero row appended to each gate's block."""
    w = w.reshape(gates, H, *w.shape[1:])  # [gates, H, ...]
    return F.pad(w, [0, 0] * (w.dim() - 2) + [0, 1]).reshape(gates * (H + 1), *w.shape[2:])


def run_even(layer: nn.LSTM | nn.GRU, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`layer(x)` for a one-layer, batch-first (bi)directional LSTM or GRU, as an even-sized layer.

    x: [B, T, F] -> (outputs [B, T, dirs*H], final hidden states [dirs, B, H]).
    """
    H = layer.hidden_size
    if H % 2 == 0:
        return run_as_is(layer, x)
    lstm = isinstance(layer, nn.LSTM)
    gates, dirs = (4 if lstm else 3), (2 if layer.bidirectional else 1)
    weights = []
    for sfx in ["_l0", "_l0_reverse"][:dirs]:
        w_ih, w_hh, b_ih, b_hh = (getattr(layer, k + sfx) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        weights += [_pad_units(w_ih, H, gates),  # [gates*(H+1), F]
                    F.pad(_pad_units(w_hh, H, gates), [0, 1]),  # [gates*(H+1), H+1]
                    _pad_units(b_ih, H, gates), _pad_units(b_hh, H, gates)]  # [gates*(H+1)]
    h0 = x.new_zeros(dirs, len(x), H + 1)  # [dirs, B, H+1]
    if lstm:
        out, h, _ = torch.lstm(x, (h0, h0), weights, True, 1, 0.0, layer.training, dirs == 2, True)
    else:
        out, h = torch.gru(x, h0, weights, True, 1, 0.0, layer.training, dirs == 2, True)
    # out: [B, T, dirs*(H+1)], h: [dirs, B, H+1]; drop each direction's zero unit
    out = torch.cat([out[..., d * (H + 1) : d * (H + 1) + H] for d in range(dirs)], dim=-1)
    return out, h[..., :H]
