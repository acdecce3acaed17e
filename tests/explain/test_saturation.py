"""A model sure of itself: its probability's map is blank and says why; its log-odds' map shows the box.

Every method that explains the chosen score takes the log-odds from one place
(``LoadedModel.target_scores``); the trust figures stay on the probability.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.integrated_gradients import IntegratedGradientsParams
from explain.lime import LimeParams
from explain.methods import METHODS
from explain.model_file import load_model
from explain.occlusion import OcclusionParams
from explain.session import ExplanationRequest, ExplanationSettings, finish, saturation_warning
from tests.model_factory import RegionDetector, card_for, export_model

CPU = torch.device("cpu")
BOX = (6, 18, 20, 36)
#: The sure model's logit: 4 times the box's mean plus this, never below 18 on these inputs.
OFFSET = 30.0


@pytest.fixture(scope="module")
def sure(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saturated")
    return load_model(export_model(RegionDetector(BOX, offset=OFFSET), card_for(32, 48), folder), CPU)


@pytest.fixture(scope="module")
def image():
    return torch.rand(1, 32, 48, generator=torch.Generator().manual_seed(0)) * 4 - 2


def request_for(model, x, method: str, params, score: str) -> ExplanationRequest:
    return ExplanationRequest(ExplanationSettings(METHODS[method], params, model, 1, trust=False, score=score), x)


def outside_box(heatmap: np.ndarray, margin: int) -> np.ndarray:
    """The map with the box, widened by ``margin`` (a window that overlaps it), cut out."""
    top, bottom, left, right = BOX
    outside = heatmap.copy()
    outside[max(top - margin, 0):bottom + margin, max(left - margin, 0):right + margin] = 0
    return outside


def test_occlusion_of_a_saturated_probability_is_blank_and_says_why(sure, image):
    request = request_for(sure, image, "occlusion", OcclusionParams(8, 4), "probability")
    assert "probability saturated at 1.000" in saturation_warning(request)
    outcome = finish(request)
    assert np.abs(outcome.final.heatmap).max() == 0.0
    assert any("saturated at 1.000" in note and "log-odds" in note for note in outcome.final.notes)
    assert request.settings.units == "drop in probability"


def test_occlusion_of_the_log_odds_shows_the_box(sure, image):
    request = request_for(sure, image, "occlusion", OcclusionParams(8, 4), "log-odds")
    assert saturation_warning(request) == ""
    outcome = finish(request)
    assert np.abs(outcome.final.heatmap).max() > 0.1 and not outside_box(outcome.final.heatmap, 8).any()
    assert outcome.final.notes == ()
    figures = outcome.final.figures
    assert figures["score"] == pytest.approx(1.0) and figures["score_log_odds"] > 18
    assert request.settings.explained_score == "log-odds" and request.settings.units == "drop in log-odds"


@pytest.mark.parametrize(("method", "params"), [
    ("ig", IntegratedGradientsParams(steps=16)),
    ("lime", LimeParams(samples=200, segments=20)),
])
def test_every_method_of_the_chosen_score_explains_the_log_odds(sure, image, method, params):
    blank = finish(request_for(sure, image, method, params, "probability")).final.heatmap
    shown = finish(request_for(sure, image, method, params, "log-odds")).final.heatmap
    assert np.abs(blank).max() < 1e-6 < np.abs(shown).max()


def test_integrated_gradients_of_the_log_odds_add_up_to_its_change(sure, image):
    outcome = finish(request_for(sure, image, "ig", IntegratedGradientsParams(steps=16, baseline=0.0), "log-odds"))
    top, bottom, left, right = BOX
    # The log-odds are linear in the box's pixels: their change from the zero baseline is 4 times the box's mean.
    expected = 4 * float(image[:, top:bottom, left:right].mean())
    assert outcome.final.attribution.sum() == pytest.approx(expected, rel=1e-3)
    assert abs(outcome.final.figures["completeness_gap"]) < 1e-3


def test_grad_cam_explains_the_log_odds_whatever_is_chosen_and_is_never_called_saturated(sure, image):
    request = request_for(sure, image, "gradcam", METHODS["gradcam"].params(), "probability")
    assert request.settings.explained_score == "log-odds" and saturation_warning(request) == ""


def test_the_trust_figures_judge_the_probability(sure, image):
    settings = ExplanationSettings(METHODS["occlusion"], OcclusionParams(8, 4), sure, 1, score="log-odds")
    outcome = finish(ExplanationRequest(settings, image))
    assert outcome.trust["score"] == pytest.approx(1.0)


def test_an_unknown_score_is_refused(sure):
    with pytest.raises(ValueError, match="score must be one of"):
        ExplanationSettings(METHODS["occlusion"], OcclusionParams(), sure, 1, score="logit")
