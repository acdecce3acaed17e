"""A study of 1,000 images from Orthanc: all of it arrives whole, the first image early, and a cancel loses nothing.

The 64 x 64 slices are stored into the private Orthanc over one association; the retrieve is
our C-GET, as the viewer runs it, each instance handed on as it is written to the cache.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from pacs.cache import Cache
from pacs.dimse import DimseClient
from tests.dicom_factory import write_ct_series
from tests.pacs.conftest import dimse_node

STUDY = "1.2.826.0.1.3680043.8.498.4004"
IMAGES = 1000


@pytest.fixture(scope="module")
def large_study(orthanc, tmp_path_factory) -> dict[str, np.ndarray]:
    """1,000 CT slices stored into Orthanc; their pixels by SOP Instance UID."""
    paths = write_ct_series(tmp_path_factory.mktemp("large"), IMAGES, rows=64, cols=64, study_uid=STUDY,
                            shuffle_names=False, extra={"PatientID": "PACS-LARGE"})
    results = DimseClient(dimse_node(orthanc, timeout=30.0)).send(paths)
    assert all(result.ok for result in results), {result.message for result in results if not result.ok}
    return pixels_by_uid(paths)


def pixels_by_uid(paths: list[Path]) -> dict[str, np.ndarray]:
    datasets = [dcmread(path) for path in paths]
    return {str(dataset.SOPInstanceUID): dataset.pixel_array for dataset in datasets}


def assert_whole(cache: Cache, expected: dict[str, np.ndarray]) -> int:
    """Every file in the cache is whole, one of the study's, with its pixels; how many there are."""
    assert not list(cache.root.rglob("*.partial"))
    found = pixels_by_uid(cache.instances(STUDY))
    for uid, pixels in found.items():
        np.testing.assert_array_equal(pixels, expected[uid])
    return len(found)


def test_a_1000_image_study_streams_into_the_cache_whole(orthanc, large_study, tmp_path):
    cache = Cache(tmp_path / "cache", 1 << 30)
    first: list[tuple[float, int]] = []  # when the first image was handed on, and how many the cache held then

    def on_instance(path: Path) -> None:
        if not first:
            first.append((time.perf_counter(), len(cache.instances(STUDY))))

    started = time.perf_counter()
    result = DimseClient(dimse_node(orthanc, timeout=30.0)).retrieve(cache, STUDY, on_instance=on_instance)
    finished = time.perf_counter()
    assert (result.kept, result.failed, result.method, result.cancelled) == (IMAGES, 0, "C-GET", False)
    (arrived, held), = first
    assert held == 1 and arrived - started < (finished - started) / 2, (arrived - started, finished - started)
    assert assert_whole(cache, large_study) == IMAGES


def test_a_cancel_midway_leaves_whole_files_and_the_next_retrieve_completes_it(orthanc, large_study, tmp_path):
    cache = Cache(tmp_path / "cache", 1 << 30)
    arrived: list[Path] = []
    client = DimseClient(dimse_node(orthanc, timeout=30.0))
    result = client.retrieve(cache, STUDY, on_instance=arrived.append, cancelled=lambda: len(arrived) >= IMAGES // 2)
    assert result.cancelled
    assert IMAGES // 2 <= assert_whole(cache, large_study) < IMAGES
    result = client.retrieve(cache, STUDY)
    assert (result.kept, result.cancelled) == (IMAGES, False)
    assert assert_whole(cache, large_study) == IMAGES
