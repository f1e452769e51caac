"""Shared fixtures: the tiny digits dataset, a 10% forget split and a small CNN that memorised it."""

from __future__ import annotations

import os

import pytest
import torch

import lotus_unlearn as lu
from lotus_unlearn.data import DatasetBundle, instance_split, load_dataset

os.environ.setdefault("LOTUS_PROGRESS", "0")
# one torch thread per pytest-xdist worker: two workers on two cores, no oversubscription
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models (`pytestmark = pytest.mark.usefixtures("one_thread")`):
    as fast as two on an idle machine, 10-30x faster on a busy one (OpenMP workers spin-wait for a free core).
    Restored when the module ends."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits() -> DatasetBundle:
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="session")
def digits_split(digits):
    """(forget, retain) with 10% of each class forgotten."""
    return instance_split(digits.train, 0.1, seed=0).apply(digits.train)


def make_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return lu.create_model("cnn", num_classes=10, in_channels=1, image_size=8, width=16, hidden=128)


@pytest.fixture(scope="session")
def digits_original(digits):
    """A small CNN trained on all of digits' train split until it memorises it (train acc ~1.0)."""
    return lu.train_model(
        make_cnn(), digits.train, epochs=15, lr=0.05, batch_size=64, augment=False, device="cpu", seed=0
    ).model


@pytest.fixture(scope="session")
def digits_gold(digits, digits_split):
    """The same recipe retrained on the retain set only."""
    _, retain = digits_split
    return lu.train_model(
        make_cnn(), retain, epochs=15, lr=0.05, batch_size=64, augment=False, device="cpu", seed=0
    ).model
