"""The benchmark's FLOP counter (benchmarks/flops.py) against hand-computed tiny cases."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "flops.py"
_spec = importlib.util.spec_from_file_location("coincast_bench_flops", _PATH)
flops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flops)


def test_single_lstm_layer_by_hand():
    # F=2 inputs, T=3 steps, one unidirectional LSTM with H=1, Dense(1), no dropout.
    # One step: W_ih x = 4 gates x 2 inputs = 8 MACs = 16; W_hh h = 4 MACs = 8;
    # sum of both 4 + bias 4; c = f*c + i*g: 3; h = o*tanh(c): 1;
    # nonlinearities: 3 sigmoid + 2 tanh = 5.  -> 41 per step, 123 for 3 steps.
    # Dense on 1 value: 1 MAC (2) + bias (1) = 3.  Forward = 126.
    # Training = 3 x (forward + MSE 3) = 387.
    c = flops.training_flops(2, 3, hidden=(1,), bidirectional=False, dropout=False)
    assert c["forward_flops_per_window"] == 126
    assert c["training_flops_per_window"] == 387
    # params: 4 gates x (2 + 1) weights + 4 biases = 16; dense 1 + 1 = 2.
    assert c["params"] == 18
    assert c["adam_flops_per_step"] == 18 * flops.ADAM_FLOPS_PER_PARAM


def test_stacked_bidirectional_lstm_by_hand():
    # F=1, T=2, two BiLSTM layers of H=1, dropout after the first, Dense(1).
    # Layer 0 step (I=1): 8*(1+1) + 12 + 5 = 33; x 2 directions x 2 steps = 132.
    # Dropout on its [T=2, 2H=2] output: 4 (training only).
    # Layer 1 step (I=2): 8*(2+1) + 17 = 41; x 2 x 2 = 164.
    # Dense on 2H = 2 values: 2*2 + 1 = 5.  Forward = 132 + 164 + 5 = 301.
    # Training = 3 x (301 + 4 + 3) = 924.
    c = flops.training_flops(1, 2, hidden=(1, 1))
    assert c["forward_flops_per_window"] == 301
    assert c["dropout_flops_per_window"] == 4
    assert c["training_flops_per_window"] == 924
    assert [layer["flops"] for layer in c["layers"]] == [132, 164, 5]
    # params: 2 x (4*(1+1) + 4) + 2 x (4*(2+1) + 4) + (2 + 1) = 24 + 32 + 3.
    assert c["params"] == 59


def test_gru_by_hand():
    # F=1, T=1, one GRU H=1: 6*(1+1) + 14 + 3 = 29; Dense 3. Forward 32, training 3*35.
    c = flops.training_flops(1, 1, hidden=(1,), bidirectional=False, cell="gru")
    assert c["forward_flops_per_window"] == 32
    assert c["training_flops_per_window"] == 105
    # 3 gates x (1 + 1) weights + 2 x 3 biases = 12; dense 2.
    assert c["params"] == 14


def test_tutorial_network_magnitude():
    # The estimate: ~80 MFLOP per training window with 5 features.
    c = flops.training_flops(5, 49)
    assert 78e6 < c["training_flops_per_window"] < 82e6
    assert c["params"] == 272_539  # Keras model.count_params() of this network on F=5


def test_epoch_flops_counts_adam_and_validation():
    c = flops.training_flops(2, 3, hidden=(1,), bidirectional=False, dropout=False)
    # 3 batches of <= 1024, 2500 windows trained, 10 validated.
    e = flops.epoch_flops(c, n_fit=2500, n_val=10, batch_size=1024)
    assert e == 387 * 2500 + 3 * c["adam_flops_per_step"] + 126 * 10


def test_rejects_unknown_cell():
    with pytest.raises(ValueError):
        flops.training_flops(5, 49, cell="rnn")
