"""Shared fixtures: real bundled data, tiny settings so the suite stays fast."""

from __future__ import annotations

import pytest

from coincast import load
from coincast.config import Settings, preset


def tiny(name: str = "default", **data) -> Settings:
    """A small, fast model on the real data: 1 epoch, 4 units per layer."""
    s = preset(name)
    s.model.hidden = [4, 4]
    s.train.epochs = 1
    s.train.batch_size = 256
    for k, v in data.items():
        setattr(s.data, k, v)
    return s


@pytest.fixture(scope="session")
def btc():
    return load("btc-usd")


@pytest.fixture(scope="session")
def tutorial_frame():
    return load("tutorial")
