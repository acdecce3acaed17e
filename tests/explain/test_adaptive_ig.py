"""Adaptive integrated gradients meets its tolerance, splitting where the gap arises, each node evaluated once."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from explain.engine import CancelToken
from explain.integrated_gradients import (
    FIRST_NODES,
    MAX_ADAPTIVE_NODES,
    ROUND_BATCH,
    IntegratedGradientsParams,
    PathWalk,
    RefinedPath,
    integrated_gradients,
)
from explain.model_file import load_model
from tests.model_factory import RegionDetector, SmallCnn, TinyDenseNet, card_for, export_model

CPU = torch.device("cpu")


def relative_gap(update) -> float:
    figures = update.figures
    explained = figures.get("noisy_score", figures["score"]) - figures["baseline_score"]
    return abs(float(update.attribution.sum(dtype=np.float64)) - explained) / abs(explained)


@pytest.mark.parametrize("architecture", [SmallCnn, TinyDenseNet])
@pytest.mark.parametrize("tolerance", [0.01, 0.002])
def test_gap_is_within_the_tolerance(tmp_path, image, architecture, tolerance):
    model = load_model(export_model(architecture(), card_for(40, 56), tmp_path), CPU)
    last = list(integrated_gradients(model, image, 1, IntegratedGradientsParams(steps=0, tolerance=tolerance)))[-1]
    assert last.final and last.figures["cap_reached"] == 0.0
    assert relative_gap(last) <= tolerance
    assert last.figures["relative_completeness_gap"] == pytest.approx(relative_gap(last), rel=1e-6)
    assert last.figures["steps_used"] > 3, "these models need more than the first rule"


def spy_on_points(monkeypatch) -> list[float]:
    """Records every node evaluated along the (single) path, through ``PathWalk.points``."""
    seen: list[float] = []
    points = PathWalk.points

    def recording(self, alphas, which):
        seen.extend(alphas.tolist())
        return points(self, alphas, which)
    monkeypatch.setattr(PathWalk, "points", recording)
    return seen


def test_no_node_is_evaluated_twice(monkeypatch, cnn, image):
    seen = spy_on_points(monkeypatch)
    updates = list(integrated_gradients(cnn, image, 1, IntegratedGradientsParams(steps=0, tolerance=0.002),
                                        batch_size=3))
    used = int(updates[-1].figures["steps_used"])
    assert len(seen) == len(set(seen)) == used > len(FIRST_NODES)
    finest = 2.0 ** np.ceil(-np.log2(np.diff(sorted(seen)).min()))
    np.testing.assert_array_equal(np.array(seen) * finest, np.round(np.array(seen) * finest)), "each a midpoint"
    assert updates[-1].evaluations == 2 + used, "the ends' scores, then one gradient per node"


def test_each_refinement_is_one_batch(monkeypatch, cnn, image):
    """A round's nodes wait for the last round's scores: they share a batch (up to ROUND_BATCH),
    however small the scorer's own size still is."""
    batches: list[int] = []
    scored_gradients = PathWalk.scored_gradients

    def recording(self, batch):
        batches.append(len(batch))
        return scored_gradients(self, batch)
    monkeypatch.setattr(PathWalk, "scored_gradients", recording)
    rounds, steps = [], 0
    for update in integrated_gradients(cnn, image, 1, IntegratedGradientsParams(steps=0, tolerance=0.002)):
        added = int(update.figures["steps_used"]) - steps
        steps += added
        rounds.append((added, list(batches)))
        batches.clear()
    assert rounds[0] == (len(FIRST_NODES), [len(FIRST_NODES)])
    assert any(added > ROUND_BATCH for added, _ in rounds) and any(1 < added < ROUND_BATCH for added, _ in rounds)
    for added, sizes in rounds[1:]:
        assert sizes == [ROUND_BATCH] * (added // ROUND_BATCH) + [added % ROUND_BATCH] * (added % ROUND_BATCH > 0)


def test_nodes_go_where_the_slope_jumps():
    """A score whose slope jumps at 0.3 along the path: the splits close in on the jump."""
    direction = torch.ones(1, 2, 2)
    slope = lambda alpha: 1.0 if alpha < 0.3 else 3.0  # noqa: E731
    rise = lambda alpha: min(alpha, 0.3) + 3 * max(alpha - 0.3, 0.0)  # noqa: E731

    def node(alpha: float) -> tuple[float, torch.Tensor]:
        return rise(alpha), torch.full((1, 2, 2), slope(alpha) / 4)

    scores, gradients = zip(*(node(a) for a in FIRST_NODES))
    path = RefinedPath(direction, np.array(FIRST_NODES), np.array(scores), list(gradients))
    for _ in range(6):
        splits = path.to_split(room=100)
        assert len(splits) == 1 and abs(splits[0] - 0.3) < abs(path.alphas - 0.3).max()
        scores, gradients = zip(*(node(a) for a in splits))
        path.add(splits, np.array(scores), list(gradients))
    gap = float(path.attribution().sum()) - rise(1.0)
    assert abs(gap) < 0.01 * rise(1.0) < abs(np.diff(FIRST_NODES).max() * 2 * 0.3)
    assert np.allclose(path.local_gaps()[np.abs(path.alphas[:-1] - 0.3) > 0.05], 0.0)


def test_noise_refines_each_copy_and_takes_the_baseline_once(monkeypatch, cnn, image):
    seen = spy_on_points(monkeypatch)
    params = IntegratedGradientsParams(steps=0, tolerance=0.01, noise_samples=3, noise_level=0.1)
    last = list(integrated_gradients(cnn, image, 1, params))[-1]
    assert seen.count(0.0) == 1 and seen.count(1.0) == 3
    assert relative_gap(last) <= 0.01 * 3, "each copy within the tolerance; their mean within the sum"
    assert len(seen) <= 1 + 3 * (last.figures["steps_used"] - 1)


def test_a_linear_score_converges_on_the_first_rule(tmp_path):
    box = (5, 20, 10, 30)
    model = replace(load_model(export_model(RegionDetector(box), card_for(40, 56), tmp_path), CPU), score="log-odds")
    x = torch.rand(1, 40, 56, generator=torch.Generator().manual_seed(2))
    updates = list(integrated_gradients(model, x, 1, IntegratedGradientsParams(steps=0, baseline=0.0)))
    assert updates[-1].final and relative_gap(updates[-1]) < 1e-5
    assert updates[-1].figures["steps_used"] <= 2 * len(FIRST_NODES), "one confirming refinement at most"


def test_the_cap_is_reported(cnn, image):
    last = list(integrated_gradients(cnn, image, 1, IntegratedGradientsParams(steps=0, tolerance=1e-9)))[-1]
    assert last.final and last.figures["steps_used"] == MAX_ADAPTIVE_NODES
    assert last.figures["cap_reached"] == 1.0
    assert len(last.notes) == 1 and f"cap of {MAX_ADAPTIVE_NODES} nodes" in last.notes[0]


def test_cancel_stops_after_the_refinement_under_way(cnn, image):
    cancel = CancelToken()
    seen = []
    for update in integrated_gradients(cnn, image, 1, IntegratedGradientsParams(steps=0, tolerance=1e-9),
                                       cancel=cancel, batch_size=2):
        seen.append(update)
        cancel.cancel()
    assert len(seen) == 1 and not seen[0].final
    assert seen[0].evaluations == 2 + len(FIRST_NODES), "the first rule, then nothing more"


def test_refinements_stream_in_order(cnn, image):
    updates = list(integrated_gradients(cnn, image, 1, IntegratedGradientsParams(steps=0, tolerance=0.002)))
    steps = [u.figures["steps_used"] for u in updates]
    assert len(updates) > 2 and steps[0] == len(FIRST_NODES)
    assert all(later > earlier for earlier, later in zip(steps, steps[1:])), "one update per refinement"
    progress = [u.progress for u in updates]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert [u.final for u in updates] == [False] * (len(updates) - 1) + [True]
    assert all(u.attribution is None for u in updates[:-1]) and updates[-1].attribution is not None
    assert np.corrcoef(updates[-2].heatmap.ravel(), updates[-1].heatmap.ravel())[0, 1] > 0.9


def test_fixed_steps_still_give_the_fixed_rule(cnn, image):
    fixed = list(integrated_gradients(cnn, image, 1, IntegratedGradientsParams(steps=12, tolerance=0.5)))[-1]
    assert fixed.figures["steps_used"] == 12 and "cap_reached" not in fixed.figures
    assert fixed.evaluations == 2 + 12


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="steps"):
        IntegratedGradientsParams(steps=-1)
    with pytest.raises(ValueError, match="tolerance"):
        IntegratedGradientsParams(steps=0, tolerance=0.0)
