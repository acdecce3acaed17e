"""The demo model's card says what it expects, as its training script writes it, and its phantoms fit it."""

from __future__ import annotations

import numpy as np
from make_demo_study import chest_dataset
from make_phantoms import DEFAULT_ROWS, detector
from train_demo_model import card

from dicom.bundled import DEMO_MODEL
from explain.expected_images import check_image
from explain.model_card import ModelCard


def test_the_shipped_card_expects_what_the_training_script_declares():
    assert ModelCard.read(DEMO_MODEL.with_suffix(".json")).expects == card().expects


def test_the_phantoms_are_what_the_demo_model_expects():
    rows, columns, _spacing = detector(DEFAULT_ROWS)
    fit = check_image(card().expects, chest_dataset(np.full((rows, columns), 1000, dtype=np.uint16)))
    assert fit.fits and fit.line() == ""
