"""Exact FLOP count of the tutorial network: stacked (bi)LSTM/GRU layers and a dense head.

Plain Python, no torch/tensorflow import, so both the coincast benchmark and the Keras
reference (benchmarks/keras_reference.py) load this one file and report the same numbers.

Conventions (per window, i.e. per sample; a batch of B costs B times as much):
- A multiply-add is 2 FLOPs. A matrix-vector product y = W x with W [m, n] costs 2*m*n.
- Every element-wise add, multiply or subtract is 1 FLOP; a bias add is m FLOPs.
- Each sigmoid or tanh evaluation counts as 1 FLOP (``NONLIN_FLOPS``). Its real cost is
  ~10-20 instructions, but the nonlinearities are O(H) per step against O(H*(I+H)) for the
  matrix products: below 1% of the total for the tutorial network either way.
- LSTM step (Keras/PyTorch gate layout i, f, g, o), per direction, input size I, hidden H:
    input projection   W_ih x_t            2*4H*I
    recurrent product  W_hh h_{t-1}        2*4H*H   (counted at t=0 too: it is computed)
    sum of both + bias                     4H + 4H  (one bias vector, as Keras; PyTorch's
                                                     second bias would add 4H more)
    gates              3 sigmoid + 1 tanh  4H nonlinearities
    c_t = f*c + i*g                        3H
    h_t = o*tanh(c_t)                      H + H nonlinearities
  total 8H(I+H) + 12H + 5H*NONLIN_FLOPS.
- GRU step (reset_after=True, the Keras 2+/PyTorch/cuDNN form), per direction:
    W_ih x_t and W_hh h_{t-1}              2*3H*I + 2*3H*H
    two bias vectors                       3H + 3H
    r, z pre-activations (sum)             2H, then 2 sigmoids (2H nonlinearities)
    n = tanh(x_n + r*(h_n))                H mul + H add + H nonlinearities
    h_t = (1-z)*n + z*h                    4H
  total 6H(I+H) + 14H + 3H*NONLIN_FLOPS.
- Bidirectional: two independent directions over all T steps, each reading the layer's full
  input (also for the last layer, whose backward direction must run the whole sequence to
  produce its final state); outputs are concatenated (0 FLOPs), so the next layer's input
  size is 2H.
- Dense head on the last hidden vector D (2H if bidirectional): 2*D*units + units (bias).
- Dropout (training only): 1 multiply per element of each dropped tensor (the 1/(1-p)
  scale folded into the mask). Loss (MSE, training only): 3 FLOPs per output value.
- Training = forward + backward, backward counted as 2x forward (one product for the
  gradient w.r.t. the inputs and one for the weights, each the size of the forward one),
  so ``training_flops_per_window = 3 * (forward incl. dropout and loss)``. This is the
  usual 3x convention (Kaplan et al. 2020 / PaLM's MFU); it ignores recomputation and the
  element-wise backward of the nonlinearities beyond that factor.
- The optimizer update is per parameter per batch, not per window: Adam costs
  ``ADAM_FLOPS_PER_PARAM`` (m: 3, v: 4, update with bias correction folded into the
  learning rate: sqrt + add + div + mul + sub = 5) per parameter per step; reported
  separately, use ``epoch_flops`` for a whole epoch.
"""

from __future__ import annotations

import math

NONLIN_FLOPS = 1
ADAM_FLOPS_PER_PARAM = 12
_CELLS = ("lstm", "gru")


def _cell_step_flops(cell: str, n_in: int, h: int) -> int:
    """FLOPs of one time step of one direction of a recurrent cell (see module docstring)."""
    if cell == "lstm":
        return 8 * h * (n_in + h) + 12 * h + 5 * h * NONLIN_FLOPS
    return 6 * h * (n_in + h) + 14 * h + 3 * h * NONLIN_FLOPS


def _cell_params(cell: str, n_in: int, h: int) -> int:
    """Trainable parameters of one direction, Keras convention (one bias; GRU reset_after: two)."""
    if cell == "lstm":
        return 4 * h * (n_in + h) + 4 * h
    return 3 * h * (n_in + h) + 6 * h


def training_flops(
    n_features: int,
    seq_len: int,
    hidden: tuple[int, ...] = (49, 98, 49),
    bidirectional: bool = True,
    cell: str = "lstm",
    dense_units: int = 1,
    dropout: bool = True,
) -> dict:
    """FLOPs per window of the stacked recurrent network, forward and training (see docstring).

    ``n_features``: input columns F; ``seq_len``: time steps T (49 in the tutorial);
    ``hidden``: hidden size of each stacked layer; ``dropout``: a dropout layer after every
    recurrent layer but the last (the tutorial's layout). Returns a dict of ints:
    ``forward_flops_per_window`` (inference), ``training_flops_per_window`` (3x the training
    forward), ``params``, ``adam_flops_per_step`` and a per-layer breakdown.
    """
    cell = cell.lower()
    if cell not in _CELLS:
        raise ValueError(f"cell must be one of {_CELLS}, got {cell!r}")
    if n_features < 1 or seq_len < 1 or not hidden or min(hidden) < 1:
        raise ValueError("n_features, seq_len and every hidden size must be >= 1")
    dirs = 2 if bidirectional else 1

    layers = []
    n_in = n_features
    recurrent = 0
    dropout_flops = 0
    params = 0
    for i, h in enumerate(hidden):
        step = _cell_step_flops(cell, n_in, h)
        flops = dirs * seq_len * step
        layers.append({"layer": f"{'bi' if bidirectional else ''}{cell}{i}", "input": n_in,
                       "hidden": h, "flops": flops})
        recurrent += flops
        params += dirs * _cell_params(cell, n_in, h)
        if dropout and i < len(hidden) - 1:
            dropout_flops += seq_len * dirs * h  # the full sequence output is dropped
        n_in = dirs * h
    dense = 2 * n_in * dense_units + dense_units
    params += n_in * dense_units + dense_units
    layers.append({"layer": "dense", "input": n_in, "hidden": dense_units, "flops": dense})
    loss = 3 * dense_units

    forward = recurrent + dense
    training_forward = forward + dropout_flops + loss
    return {
        "forward_flops_per_window": forward,
        "training_flops_per_window": 3 * training_forward,
        "training_forward_flops_per_window": training_forward,
        "dropout_flops_per_window": dropout_flops,
        "loss_flops_per_window": loss,
        "params": params,
        "adam_flops_per_step": ADAM_FLOPS_PER_PARAM * params,
        "layers": layers,
        "convention": ("multiply-add = 2 FLOPs; sigmoid/tanh = 1 FLOP; "
                       "training = 3 x forward (incl. dropout, loss); Adam separate"),
    }


def epoch_flops(counts: dict, n_fit: int, n_val: int = 0, batch_size: int = 1024) -> int:
    """FLOPs of one training epoch: train n_fit windows, one Adam step per batch, then
    a forward (inference) pass over n_val validation windows."""
    steps = math.ceil(n_fit / batch_size)
    return (counts["training_flops_per_window"] * n_fit
            + counts["adam_flops_per_step"] * steps
            + counts["forward_flops_per_window"] * n_val)
