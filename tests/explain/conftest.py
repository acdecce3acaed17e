"""Fixtures the integrated-gradients tests share: a small exported CNN and an image for it."""

from __future__ import annotations

import pytest
import torch

from explain.model_file import load_model
from tests.model_factory import SmallCnn, card_for, export_model


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """A seeded small CNN for 40 x 56 inputs, exported and loaded as the engine loads a user's model."""
    return load_model(export_model(SmallCnn(), card_for(40, 56), tmp_path_factory.mktemp("cnn")), torch.device("cpu"))


@pytest.fixture(scope="module")
def image():
    """A seeded random 40 x 56 one-channel input."""
    return torch.randn(1, 40, 56, generator=torch.Generator().manual_seed(1))
