"""The settings `coincast tune` searches: one Optuna trial -> {section: {field: value}} overrides.

`suggest(trial)` asks the trial for every value; `suggest(optuna.trial.FixedTrial(params))`
rebuilds the overrides of a finished trial from its parameters (the best settings' TOML).
The default preset is the starting point: what is not searched keeps its value.
"""

from __future__ import annotations

from coincast.prep.features import ALL_FEATURES

# Inputs a trial may add to the target's own price (close): the indicator list, default periods.
OPTIONAL_FEATURES = [f for f in ALL_FEATURES.split(",") if f != "close"]


def hidden_sizes(layers: int, units: int) -> list[int]:
    """1, 2 or 3 recurrent layers; three have the tutorial's shape (u, 2u, u): 48 is about the
    default's (49, 98, 49), and 64 the largest, so that one trial stays minutes on a laptop's core."""
    return {1: [units], 2: [units, units], 3: [units, 2 * units, units]}[layers]


def suggest(trial) -> dict:
    layers = trial.suggest_int("layers", 1, 3)
    units = trial.suggest_categorical("units", [16, 32, 48, 64])
    features = ["close"] + [f for f in OPTIONAL_FEATURES if trial.suggest_categorical(f"feature_{f}", [False, True])]
    return {
        "data": {
            "window": trial.suggest_int("window", 20, 90, step=10),
            "features": features,
        },
        "model": {
            "hidden": hidden_sizes(layers, units),
            "cell": trial.suggest_categorical("cell", ["lstm", "gru"]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "target": trial.suggest_categorical("target", ["change", "window"]),
            "scaling": trial.suggest_categorical("scaling", ["revin", "none"]),
            "shrink": trial.suggest_categorical("shrink", [True, False]),
        },
        "train": {
            "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256, 512, 1024]),
            "epochs": trial.suggest_categorical("epochs", [25, 50, 100]),
            "patience": trial.suggest_categorical("patience", [5, 10, 20]),
            "loss": trial.suggest_categorical("loss", ["mse", "huber"]),
        },
    }
