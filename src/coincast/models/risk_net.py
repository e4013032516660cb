"""The risk network: a bidirectional LSTM with a distribution head (quantiles of the next return).

The head does not predict quantiles from nothing: it reshapes a base distribution given for each
window (models/risk_network.py: the fold's GARCH(1,1)-t and HAR-t quantiles blended, in units of
GARCH's volatility forecast). It outputs a shift d of the median and, for each gap between
neighbouring levels, a log stretch u:

    z[m] = base[m] + d                        (m: the median's level)
    z[k] = z[k-1] + gap[k-1] exp(u[k-1])      above the median
    z[k] = z[k+1] - gap[k] exp(u[k])          below it

so the quantiles are increasing by construction, and a head of zeros (its initial state) is the
base distribution exactly: the network starts as GARCH(1,1)-t and moves away from it only as far
as training on the pinball loss takes it.
"""

from __future__ import annotations

import torch
from torch import nn

U_LIMIT = 5.0  # a gap stretches at most e^5 times either way


class RiskNet(nn.Module):
    def __init__(self, n_features: int, n_levels: int, median: int, hidden: int = 16):
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, n_levels)  # d and K-1 stretches, all zero: the base distribution
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.median = median  # the index of the 50% level

    def forward(self, x: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """x: [B, T, F] windows, base: [B, K] (or [K], shared) increasing base quantiles -> [B, K]
        quantiles (standardised)."""
        _, (h, _) = self.lstm(x)  # h: [2, B, H]
        out = self.head(torch.cat([h[0], h[1]], dim=-1))  # [B, K]
        base = base.expand(out.shape)  # [B, K]
        m = self.median
        d, u = base[:, m : m + 1] + out[:, :1], out[:, 1:].clamp(-U_LIMIT, U_LIMIT)  # [B, 1], [B, K-1]
        steps = torch.diff(base, dim=1) * torch.exp(u)  # [B, K-1] gap k: between levels k and k+1
        below = d - torch.flip(torch.cumsum(torch.flip(steps[:, :m], [1]), 1), [1])  # [B, m]
        above = d + torch.cumsum(steps[:, m:], 1)  # [B, K-1-m]
        return torch.cat([below, d, above], dim=1)  # [B, K]
