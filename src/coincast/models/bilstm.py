"""The tutorial's network: stacked (bi)directional recurrent layers and a linear head."""

from __future__ import annotations

import torch
from torch import nn


class BiLSTM(nn.Module):
    """Stacked recurrent layers with dropout between them, then Dense(1).

    Defaults match the tutorial's Keras model: Bidirectional LSTM layers of 49, 98 and 49
    units (outputs of both directions concatenated), Dropout 0.2 after the first two, and a
    linear head on the last layer's final states.
    """

    def __init__(
        self,
        n_features: int,
        hidden: list[int],
        dropout: float = 0.2,
        cell: str = "lstm",
        bidirectional: bool = True,
    ):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        dirs = 2 if bidirectional else 1
        sizes = [n_features] + [h * dirs for h in hidden[:-1]]
        self.layers = nn.ModuleList(
            rnn(i, h, batch_first=True, bidirectional=bidirectional) for i, h in zip(sizes, hidden)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden[-1] * dirs, 1)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None, run_layer=None) -> torch.Tensor:
        """x: [B, T, F] -> [B].

        In training, dropout draws from `generator` when one is given. `run_layer(layer, x)`,
        returning (outputs, final hidden states), computes a layer in place of `layer(x)`:
        the bf16 fast path passes `padding.run_even`.
        """
        run = run_layer or run_as_is
        for layer in self.layers[:-1]:
            x, _ = run(layer, x)  # [B, T, dirs*H]
            x = self._dropout(x, generator)
        _, h = run(self.layers[-1], x)  # [dirs, B, H]
        # Keras' Bidirectional(LSTM(...)) without sequences returns the forward state after the
        # last step and the backward state after the first: exactly the final hidden states.
        last = torch.cat(list(h), dim=-1)  # [B, dirs*H]
        return self.head(last).squeeze(-1)  # [B]

    def _dropout(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        p = self.dropout.p
        if generator is None or not self.training or p == 0:
            return self.dropout(x)
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= p  # [B, T, dirs*H]
        return x * keep / (1 - p)


def run_as_is(layer: nn.LSTM | nn.GRU, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out, state = layer(x)  # [B, T, dirs*H], LSTM: (h, c) / GRU: h, each [dirs, B, H]
    return out, state[0] if isinstance(state, tuple) else state
