"""Matching slices of two series by position along the slice normal."""

from __future__ import annotations

import numpy as np
import pytest

from dicom.series import open_paths
from dicom.slice_position import matching_slice, nearest_index, slice_normal
from tests.dicom_factory import write_ct_series

AXIAL = (1, 0, 0, 0, 1, 0)
SAGITTAL = (0, 1, 0, 0, 0, -1)


def two_series(tmp_path, fine: dict | None = None, coarse: dict | None = None):
    """A 2.5 mm and a 5 mm axial series of one study; returns their frames, each in anatomical order."""
    same = {"extra": {"FrameOfReferenceUID": "1.2.3.4"}}
    write_ct_series(tmp_path / "fine", 9, spacing=2.5, series_number=1, study_uid="1.2.3", **{**same, **(fine or {})})
    write_ct_series(tmp_path / "coarse", 5, spacing=5.0, series_number=2, study_uid="1.2.3",
                    **{**same, **(coarse or {})})
    first, second = open_paths([tmp_path]).all_series()
    return first.frames, second.frames


def test_the_normal_of_an_axial_plane_points_along_z():
    assert np.allclose(slice_normal(AXIAL), (0, 0, 1))
    assert slice_normal((1, 0, 0, 1, 0, 0)) is None  # rows and columns parallel: no plane
    assert slice_normal((1, 0, 0)) is None


def test_nearest_index_skips_unknown_positions():
    assert nearest_index([0.0, None, 5.0, 10.0], 6.0) == 2
    assert nearest_index([0.0, None, 5.0], 2.5) == 0  # a tie goes to the first
    assert nearest_index([None, None], 1.0) is None


def test_each_slice_finds_the_nearest_of_a_coarser_series(tmp_path):
    fine, coarse = two_series(tmp_path)
    # fine slices sit at -10, -7.5, ..., 10 mm; coarse ones at -10, -5, 0, 5, 10.
    assert [matching_slice(frame, coarse) for frame in fine] == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    assert [matching_slice(frame, fine) for frame in coarse] == [0, 2, 4, 6, 8]


def test_a_slightly_tilted_series_still_matches(tmp_path):
    fine, coarse = two_series(tmp_path, coarse={"tilt": 5.0})
    assert matching_slice(fine[8], coarse) == 4


@pytest.mark.parametrize("coarse", [{"orientation": SAGITTAL}, {"extra": {"FrameOfReferenceUID": "9.9"}}])
def test_no_match_across_planes_or_frames_of_reference(tmp_path, coarse):
    fine, other = two_series(tmp_path, coarse=coarse)
    assert matching_slice(fine[4], other) is None


def test_no_match_without_a_position(tmp_path):
    fine, coarse = two_series(tmp_path, fine={"extra": {"FrameOfReferenceUID": "1.2.3.4",
                                                       "ImagePositionPatient": None}})
    assert matching_slice(fine[0], coarse) is None
