"""The quality benchmark's scoring, on hand-made maps whose right answer is known."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from quality import aopc_ratio, otsu_iou, relevance_mass  # noqa: E402

from tests.explain.test_pointing import lesion, spot  # noqa: E402


def test_otsu_segments_a_bright_square_exactly() -> None:
    assert otsu_iou(lesion() * 3.0 + 1.0, lesion()) == pytest.approx(1.0)


def test_otsu_iou_counts_the_overlap_against_the_union() -> None:
    heatmap = np.zeros((20, 20))
    heatmap[5:10, 7:12] = 2.0  # 25 pixels, 15 of them in the lesion: IoU 15 / 35
    heatmap[0, 0] = -1.0  # the scaling to [0, 1] starts at the minimum, not at zero
    assert otsu_iou(heatmap, lesion()) == pytest.approx(15 / 35)


def test_otsu_iou_of_a_blank_map_is_zero() -> None:
    assert otsu_iou(np.ones((20, 20)), lesion()) == 0.0
    assert otsu_iou(np.full((20, 20), np.nan), lesion()) == 0.0


def test_relevance_mass_counts_only_positive_heat() -> None:
    heatmap = spot(7, 7) * 3.0 + spot(0, 0) * 1.0 - spot(0, 1) * 10.0
    assert relevance_mass(heatmap, lesion()) == pytest.approx(0.75)


def test_relevance_mass_of_an_even_map_is_the_lesion_share() -> None:
    assert relevance_mass(np.ones((20, 20)), lesion()) == pytest.approx(25 / 400)
    assert relevance_mass(-np.ones((20, 20)), lesion()) == 0.0


def test_aopc_ratio_against_a_random_order() -> None:
    assert aopc_ratio(0.3, 0.1) == pytest.approx(3.0)
    assert aopc_ratio(0.3, -0.1) == np.inf
    assert np.isnan(aopc_ratio(-0.1, 0.0))
