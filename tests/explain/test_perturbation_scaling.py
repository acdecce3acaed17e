"""Meaningful perturbation scales its penalties to a model whose score barely moves, and never
passes a blank map off as an explanation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.model_file import load_model
from explain.perturbation import REGION_HEAT, PerturbationParams, perturbation
from tests.model_factory import Indifferent, RegionDetector, SmallCnn, card_for, export_model

CPU = torch.device("cpu")
QUICK = PerturbationParams(iterations=100)


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 40, 56, generator=torch.Generator().manual_seed(3))


def test_a_model_whose_score_barely_moves_still_gets_a_region(tmp_path, image):
    # A random network: deleting the whole image moves its score by less than a hundredth.
    model = load_model(export_model(SmallCnn(), card_for(40, 56), tmp_path), CPU)
    final = list(perturbation(model, image, 1, QUICK))[-1]
    figures = final.figures
    assert figures["penalty_scale"] < 0.05, "the penalties are scaled down to the model"
    assert figures["region_found"] == 1.0 and final.heatmap.max() >= REGION_HEAT and not final.notes
    assert figures["deleted_score"] < figures["score"], "deleting the region lowers the score"
    assert figures["mask_area"] < 0.5, "a region, not the whole image"


def test_a_model_in_the_papers_regime_keeps_its_penalties(tmp_path):
    model = load_model(export_model(RegionDetector((24, 40, 16, 32)), card_for(64, 64), tmp_path), CPU)
    lesion = torch.zeros(1, 64, 64)
    lesion[:, 24:40, 16:32] = 1.0
    final = list(perturbation(model, lesion, 1, PerturbationParams(iterations=30, mask_cell=4)))[-1]
    assert final.figures["penalty_scale"] == 1.0


@pytest.mark.parametrize("mode", ["delete", "preserve"])
def test_a_blank_map_says_so_in_one_line(tmp_path, image, mode):
    model = load_model(export_model(Indifferent(), card_for(40, 56), tmp_path), CPU)
    final = list(perturbation(model, image, 1, PerturbationParams(iterations=20, mode=mode)))[-1]
    assert final.figures["region_found"] == 0.0 and np.abs(final.heatmap).max() < REGION_HEAT
    (note,) = final.notes
    assert note.startswith("No region found") and "\n" not in note and "area weight" in note
