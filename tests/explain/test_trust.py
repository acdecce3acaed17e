"""Trust figures reward a map equal to the true relevance; the sanity check catches a model-blind map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from explain.engine import CancelToken, Update
from explain.model_file import load_model
from explain.occlusion import OcclusionParams, occlusion
from explain.sanity import randomized_copy, sanity_check
from explain.trust import TrustParams, insertion_uninformative, trust_figures, verdict
from exports.trust_text import named_figures
from tests.model_factory import RegionDetector, SmallCnn, card_for, export_model

CPU = torch.device("cpu")
BOX = (10, 26, 14, 34)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return load_model(export_model(RegionDetector(BOX), card_for(40, 48), tmp_path_factory.mktemp("trust")), CPU)


def figures_for(model, heatmap, x):
    updates = list(trust_figures(model, x, 1, heatmap, torch.zeros_like(x), TrustParams(points=10, region=4)))
    assert [u.final for u in updates][-1] and all(not u.final for u in updates[:-1])
    assert [u.progress for u in updates] == sorted(u.progress for u in updates)
    return updates[-1]


def test_true_relevance_beats_random_and_its_inverse(detector):
    x = torch.ones(1, 40, 48)
    truth = np.zeros((40, 48))
    truth[BOX[0]:BOX[1], BOX[2]:BOX[3]] = 1.0
    truth += np.random.default_rng(0).random(truth.shape) * 1e-3  # break ties inside and out
    random_map = np.random.default_rng(1).random((40, 48))
    good, chance, inverse = (figures_for(detector, m, x).figures for m in (truth, random_map, -truth))
    assert good["deletion_auc"] < chance["deletion_auc"] < inverse["deletion_auc"] + 1e-9
    assert good["insertion_auc"] > chance["insertion_auc"] > inverse["insertion_auc"] - 1e-9
    assert good["aopc"] > chance["aopc"] and good["aopc"] > inverse["aopc"]
    assert good["aopc"] > good["aopc_random"] + 0.05
    assert good["top10_removed_score"] < good["random10_removed_score"] < good["score"]


def test_curves_start_at_the_score_and_end_at_the_baseline(detector):
    x = torch.ones(1, 40, 48)
    final = figures_for(detector, np.random.default_rng(2).random((40, 48)), x)
    deletion, insertion = final.curves["deletion"], final.curves["insertion"]
    assert deletion[0] == pytest.approx(final.figures["score"]) and insertion[-1] == pytest.approx(final.figures["score"])
    assert deletion[-1] == pytest.approx(insertion[0])
    assert len(final.curves["fraction"]) == len(deletion) == 11


def test_verdict_reads_plainly():
    faithful = {"score": 0.97, "top10_removed_score": 0.21, "random10_removed_score": 0.93, "aopc": 0.5,
                "aopc_random": 0.05}
    text = verdict(faithful, "effusion")
    assert text.startswith("Removing the top 10% of highlighted pixels changes the effusion probability "
                           "from 0.97 to 0.21; a random 10% changes it to 0.93.")
    assert "points at what the model uses" in text
    blind = {**faithful, "top10_removed_score": 0.94, "aopc": 0.04}
    assert "no better than chance" in verdict(blind, "effusion")


def test_a_verdict_against_its_own_first_tenth_says_what_decides_it():
    # Integrated gradients on the demo: its top tenth of pixels beats a random one, its regions do not.
    mixed = {"score": 0.94, "top10_removed_score": 0.90, "random10_removed_score": 0.99, "aopc": -0.055,
             "aopc_random": -0.006}
    text = verdict(mixed, "effusion")
    assert "Removed square by square, though, its hottest regions do no better than random ones" in text
    assert "changes by +0.06 on average, against +0.01" in text
    assert text.endswith("do not rely on it.")


def test_cancel_stops_the_figures(detector):
    cancel = CancelToken()
    x = torch.ones(1, 40, 48)
    updates = []
    for update in trust_figures(detector, x, 1, np.ones((40, 48)), torch.zeros_like(x), cancel=cancel, batch_size=4):
        updates.append(update)
        cancel.cancel()
    assert len(updates) == 1 and not updates[0].final


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return load_model(export_model(SmallCnn(seed=3), card_for(32, 32), tmp_path_factory.mktemp("cnn")), CPU)


def final_figures(updates):
    updates = list(updates)
    assert updates[-1].final
    return updates[-1].figures


def test_sanity_check_flags_a_map_that_ignores_the_model(cnn):
    x = torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(0))
    edges = np.hypot(ndimage.sobel(x[0].numpy(), 0), ndimage.sobel(x[0].numpy(), 1)).astype(np.float32)

    def edge_explainer(_model, _cancel):
        yield Update(heatmap=edges, progress=1.0, final=True, evaluations=0)

    figures = final_figures(sanity_check(cnn, edges, edge_explainer))
    assert figures == {"randomized_rank_correlation": pytest.approx(1.0), "sanity_passed": 0.0}


def test_sanity_check_passes_occlusion_on_a_real_model(cnn):
    x = torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(0))

    def occlusion_explainer(model, cancel):
        return occlusion(model, x, 1, OcclusionParams(6, 2, 0.0), cancel=cancel)

    original = list(occlusion_explainer(cnn, None))[-1].heatmap
    updates = list(sanity_check(cnn, original, occlusion_explainer))
    assert len(updates) > 1 and [u.progress for u in updates] == sorted(u.progress for u in updates)
    figures = updates[-1].figures
    assert figures["sanity_passed"] == 1.0 and abs(figures["randomized_rank_correlation"]) < 0.5


def test_randomized_copy_leaves_the_original_alone(cnn):
    x = torch.randn(2, 1, 32, 32)
    before = cnn.probabilities(x).detach()
    shuffled = randomized_copy(cnn)
    assert not torch.allclose(shuffled.probabilities(x), before)
    torch.testing.assert_close(cnn.probabilities(x).detach(), before)


def test_an_insertion_curve_from_a_baseline_the_model_already_calls_a_finding_is_called_meaningless(detector, tmp_path):
    # With offset 6 the blank baseline alone scores 0.998: revealing pixels has nothing to add.
    sure = load_model(export_model(RegionDetector(BOX, offset=6.0), card_for(40, 48), tmp_path), CPU)
    x, truth = torch.ones(1, 40, 48), np.zeros((40, 48))
    truth[BOX[0]:BOX[1], BOX[2]:BOX[3]] = 1.0
    saturated, normal = figures_for(sure, truth, x).figures, figures_for(detector, truth, x).figures
    assert saturated["removed_score"] > 0.99 and insertion_uninformative(saturated)
    assert normal["removed_score"] < 0.2 and not insertion_uninformative(normal)
    hints = {name: hint for name, _value, hint in named_figures(saturated)}
    assert hints["Insertion area"] == "meaningless on this image"
    assert verdict(saturated, "finding").endswith(" The insertion curve means nothing here: with every pixel removed "
                                                  "the finding probability is already 1.00 (the image 1.00).")
    assert "insertion" not in verdict(normal, "finding")
    assert hints["Deletion area"] == "lower is better", "the deletion curve starts from the image and keeps its meaning"
    assert {name: hint for name, _value, hint in named_figures(normal)}["Insertion area"] == "higher is better"


def test_the_insertion_rule_is_relative_to_the_image_score():
    assert insertion_uninformative({"score": 0.30, "removed_score": 0.28})
    assert not insertion_uninformative({"score": 0.30, "removed_score": 0.25})
    assert insertion_uninformative({"score": 0.97, "removed_score": 0.99})
    assert not insertion_uninformative({"score": 0.97}), "figures from before removed_score existed"
