"""The explanation session the command line and the viewer both run: stages, options, cancellation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from explain.baselines import baseline_image, broad_blur_sigma
from explain.engine import CancelToken
from explain.methods import METHODS
from explain.model_file import load_model
from explain.occlusion import OcclusionParams
from explain.session import ExplanationRequest, ExplanationSettings, Outcome, finish, run_session
from explain.trust import trust_figures
from tests.model_factory import RegionDetector, card_for, export_model

CPU = torch.device("cpu")
BOX = (6, 18, 20, 36)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(export_model(RegionDetector(BOX), card_for(32, 48), tmp_path_factory.mktemp("session")), CPU)


@pytest.fixture(scope="module")
def request_(model):
    x = torch.randn(1, 32, 48, generator=torch.Generator().manual_seed(0))
    return ExplanationRequest(ExplanationSettings(METHODS["occlusion"], OcclusionParams(8, 4), model, 1, sanity=True), x)


def test_stages_follow_each_other_and_each_ends_in_one_final_step(request_):
    steps = list(run_session(request_))
    stages = [step.stage for step in steps]
    assert stages == sorted(stages, key=["explanation", "trust", "sanity"].index)
    for stage in ("explanation", "trust", "sanity"):
        finals = [step for step in steps if step.stage == stage and step.final]
        assert len(finals) == 1 and steps.index(finals[0]) == max(i for i, s in enumerate(steps) if s.stage == stage)


def test_the_outcome_gathers_the_map_its_figures_and_its_verdict(request_):
    outcome = finish(request_)
    alone = list(request_.explain())[-1]
    np.testing.assert_array_equal(outcome.final.heatmap, alone.heatmap)
    assert outcome.verdict.startswith("Removing the top 10% of highlighted pixels changes the finding probability")
    assert {"deletion_auc", "insertion_auc", "aopc"} <= set(outcome.trust)
    assert set(outcome.sanity) == {"randomized_rank_correlation", "sanity_passed"}
    assert outcome.figures["score"] == outcome.score == alone.figures["score"]


def test_trust_can_be_skipped_and_a_partial_step_changes_no_outcome(request_):
    settings = replace(request_.settings, trust=False, sanity=False)
    steps = list(run_session(ExplanationRequest(settings, request_.model_input)))
    assert {step.stage for step in steps} == {"explanation"}
    empty = Outcome(request_)
    assert empty.after(steps[0]) is empty and not steps[0].final


def test_blur_removal_judges_the_map_against_a_broad_blur(request_):
    blur = ExplanationRequest(replace(request_.settings, removal="blur", sanity=False), request_.model_input)
    outcome = finish(blur)
    x = request_.model_input
    expected = list(trust_figures(request_.settings.model, x, 1, outcome.final.heatmap,
                                  baseline_image(x, "blur", blur_sigma=broad_blur_sigma(x))))[-1]
    assert outcome.trust == expected.figures
    assert outcome.trust != finish(replace(request_, settings=replace(request_.settings, sanity=False))).trust


def test_a_cancelled_explanation_has_no_figures(request_):
    cancel = CancelToken()
    stages = []
    for step in run_session(request_, cancel):
        stages.append(step.stage)
        cancel.cancel()
    assert stages == ["explanation"]


def test_settings_refuse_an_unknown_removal_or_target(model):
    with pytest.raises(ValueError, match="removal"):
        ExplanationSettings(METHODS["ig"], METHODS["ig"].params(), model, 1, removal="noise")
    with pytest.raises(ValueError, match="target 2"):
        ExplanationSettings(METHODS["ig"], METHODS["ig"].params(), model, 2)
