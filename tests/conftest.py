"""Shared fixtures: real bundled data, tiny settings so the suite stays fast."""

from __future__ import annotations

import pytest
import torch

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


def one_torch_thread():
    """One torch thread for a module: on a shared 2-core machine more threads only fight."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def btc():
    return load("btc-usd")


@pytest.fixture(scope="session")
def tutorial_frame():
    return load("tutorial")
