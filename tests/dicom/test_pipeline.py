"""The pixel pipeline and series assembly on synthetic files whose every value is known."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi

from dicom.files import DicomReadError
from dicom.image import FrameCache, load_frame
from dicom.pixels import GreyDisplay, ModalityTransform, Window
from dicom.series import open_paths
from tests import dicom_factory as factory


def only_frame(path: Path):
    """Open one file and return its single frame, failing loudly if it did not open."""
    collection = open_paths([path])
    assert collection.errors == []
    (series,) = collection.all_series()
    return series.frames[0]


def pydicom_dataset(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def test_rescale_gives_hounsfield_units(tmp_path):
    stored = np.array([[0, 1024, 2048], [24, 1064, 3000]], dtype=np.uint16)
    path = factory.write_image(tmp_path / "ct.dcm", stored, modality="CT", slope=1.0, intercept=-1024.0)
    image = load_frame(only_frame(path))
    np.testing.assert_array_equal(image.modality_values(), stored.astype(float) - 1024)
    assert image.value_at(1, 1) == (1064, 40.0)
    assert image.modality.units == "HU"
    assert image.value_at(5, 0) is None


def test_modality_lut_sequence_matches_pydicom(tmp_path):
    stored = np.arange(0, 64, dtype=np.uint16).reshape(8, 8)
    table = (np.arange(40) * 3 + 100).astype(np.uint16)
    path = factory.write_image(tmp_path / "mlut.dcm", stored, modality_lut=(10, 16, table))
    image = load_frame(only_frame(path))
    expected = apply_modality_lut(stored, pydicom_dataset(path))
    np.testing.assert_array_equal(image.modality_values(), expected)
    assert image.modality_values()[0, 0] == 100 and image.modality_values()[7, 7] == table[-1]


def test_linear_window_follows_the_standard():
    """PS3.3 C.11.2.1.2.1: the half-pixel offsets of LINEAR, none in LINEAR_EXACT."""
    c, w = 40.0, 400.0
    linear = Window(c, w)
    bottom, top = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    np.testing.assert_allclose(linear.to_unit(np.array([bottom, c - 0.5, top, top + 1, -5000])), [0, 0.5, 1, 1, 0])
    exact = Window(c, w, function="LINEAR_EXACT")
    np.testing.assert_allclose(exact.to_unit(np.array([c - w / 2, c, c + w / 2])), [0, 0.5, 1])
    sigmoid = Window(c, w, function="SIGMOID")
    assert sigmoid.to_unit(np.array([c]))[0] == pytest.approx(0.5)


def test_monochrome1_is_inverted_after_the_voi(tmp_path):
    path = factory.write_radiograph(tmp_path / "m1.dcm", photometric="MONOCHROME1", rows=32, cols=32)
    image = load_frame(only_frame(path))
    assert image.inverted_by_default
    window = Window(2048, 4096, function="LINEAR_EXACT")
    shown = image.render(window, invert=image.inverted_by_default)
    plain = image.render(window, invert=False)
    np.testing.assert_array_equal(shown.astype(int), 255 - plain.astype(int))
    # In MONOCHROME1 the lowest stored value is the brightest on screen.
    assert shown[np.unravel_index(image.stored.argmin(), image.stored.shape)] == shown.max()


def test_voi_lut_sequence_is_preferred_and_matches_pydicom(tmp_path):
    stored = np.arange(0, 256, dtype=np.uint16).reshape(16, 16) * 4
    table = (np.arange(1024)[::-1] * 64).astype(np.uint16)
    path = factory.write_image(tmp_path / "voilut.dcm", stored, voi_lut=(0, 16, table), windows=[(500, 200)])
    image = load_frame(only_frame(path))
    voi = image.default_voi()
    assert not isinstance(voi, Window), "a VOI LUT Sequence comes before the windows"
    expected = apply_voi(stored, pydicom_dataset(path))
    np.testing.assert_array_equal(voi.apply(image.modality_values()), expected)
    np.testing.assert_array_equal(image.render(voi, invert=False), np.rint(expected / 65535 * 255).astype(np.uint8))


def test_eight_bit_voi_lut_with_more_than_256_entries(tmp_path):
    """pydicom's ``apply_voi`` wraps indices past 255 for 8-bit tables; the standard does not."""
    stored = np.array([[0, 255, 256, 1023, 4000]], dtype=np.uint16)
    table = (np.arange(1024) // 4).astype(np.uint16)
    path = factory.write_image(tmp_path / "voilut8.dcm", stored, voi_lut=(0, 8, table))
    voi = load_frame(only_frame(path)).default_voi()
    np.testing.assert_array_equal(voi.apply(stored), [[0, 63, 64, 255, 255]])


def test_several_windows_are_all_offered_in_file_order(tmp_path):
    windows = [(40, 400, "ABDOMEN"), (-600, 1500, "LUNG"), (400, 1800, "BONE")]
    path = factory.write_image(tmp_path / "w.dcm", modality="CT", slope=1, intercept=-1024, windows=windows)
    choices = load_frame(only_frame(path)).voi_choices()
    assert [(w.center, w.width, w.label) for w in choices[:3]] == windows
    assert choices[-1].label == "Auto"


@pytest.mark.parametrize("as_float", [False, True])
def test_display_table_equals_windowing_every_pixel(as_float):
    """The fast index-and-table path shows what windowing each pixel directly would."""
    rng = np.random.default_rng(3)
    stored = rng.integers(-2000, 3000, size=(50, 70)).astype(np.int16)
    transform = ModalityTransform(slope=0.5, intercept=-100.0)
    if as_float:
        stored = stored.astype(np.float32) + rng.random(stored.shape).astype(np.float32)
    display = GreyDisplay(stored, transform)
    for window in (Window(0, 500), Window(300, 80, function="LINEAR_EXACT"), Window(-50, 2000, function="SIGMOID")):
        direct = np.rint(window.to_unit(transform.apply(stored)) * 255).astype(int)
        shown = display.render(window, invert=False).astype(int)
        # Integer data is exact; float data is quantised to 65536 levels, within one grey level.
        assert np.abs(shown - direct).max() <= (1 if as_float else 0)


def test_auto_window_ignores_a_few_hot_pixels():
    stored = np.full((100, 100), 1000, dtype=np.uint16)
    stored[:50] = 1200
    stored[0, :3] = 65000
    window = GreyDisplay(stored, ModalityTransform()).auto_window()
    assert 1000 <= window.center - window.width / 2 and window.center + window.width / 2 <= 1200


def test_shuffled_slices_are_sorted_along_the_normal(tmp_path):
    anatomical = factory.write_ct_series(tmp_path, 12, tilt=20.0, instance_numbers="descending")
    (series,) = open_paths([tmp_path]).all_series()
    assert [f.path for f in series.frames] == anatomical


def test_instance_number_is_the_fallback_order(tmp_path):
    remove_position = {"ImagePositionPatient": None}
    anatomical = factory.write_ct_series(tmp_path, 6, extra=remove_position)
    (series,) = open_paths([tmp_path]).all_series()
    numbers = [f.instance_number() for f in series.frames]
    assert numbers == sorted(numbers) and len(set(numbers)) == 6
    assert {f.path for f in series.frames} == set(anatomical)


def test_mixed_folder_groups_studies_and_series(tmp_path):
    study = pydicom.uid.generate_uid()
    ct = factory.write_ct_series(tmp_path / "a", 4, study_uid=study, series_number=2)
    scout = factory.write_image(tmp_path / "b" / "scout.dcm", modality="CT", study_uid=study, series_number=1)
    other = factory.write_radiograph(tmp_path / "c" / "chest.dcm")
    factory.write_junk(tmp_path / "b" / "junk.dcm")
    factory.write_non_image(tmp_path / "c" / "report.dcm")
    collection = open_paths([tmp_path])
    assert len(collection.studies) == 2
    by_uid = {s.uid: s for s in collection.studies}
    assert [len(s.frames) for s in by_uid[study].series] == [1, 4], "series ordered by number"
    assert by_uid[study].series[0].frames[0].path == scout
    assert {f.path for f in by_uid[study].series[1].frames} == set(ct)
    assert [f.path for s in collection.studies if s.uid != study for f in s.series[0].frames] == [other]
    reasons = {e.path.name: e.error for e in collection.errors}
    assert set(reasons) == {"junk.dcm", "report.dcm"}
    assert all("\n" not in r and r for r in reasons.values())


def test_multiframe_is_a_series_of_frames(tmp_path):
    frames = np.stack([np.full((8, 9), k * 100, dtype=np.uint16) for k in range(5)])
    path = factory.write_multiframe(tmp_path / "cine.dcm", frames)
    (series,) = open_paths([path]).all_series()
    assert len(series.frames) == 5
    for k, frame in enumerate(series.frames):
        np.testing.assert_array_equal(load_frame(frame).stored, frames[k])


def test_enhanced_multiframe_takes_rescale_and_window_from_functional_groups(tmp_path):
    frames = np.stack([np.full((8, 8), 1000 + k, dtype=np.uint16) for k in range(3)])
    path = factory.write_multiframe(
        tmp_path / "enh.dcm", frames, modality="CT", functional_groups=True, slope=2.0, intercept=-1024.0,
        windows=[(40, 400)],
    )
    (series,) = open_paths([path]).all_series()
    images = [load_frame(f) for f in series.frames]
    assert [float(img.modality_values()[0, 0]) for img in images] == [2 * (1000 + k) - 1024 for k in range(3)]
    assert images[0].default_voi() == Window(40, 400, "")


def test_truncated_pixels_fail_on_decode_with_one_line(tmp_path):
    path = factory.write_truncated(tmp_path / "cut.dcm")
    frame = only_frame(path)  # the header alone reads fine: pixels are not touched on open
    with pytest.raises(DicomReadError) as raised:
        load_frame(frame)
    assert str(raised.value).startswith("cannot decode pixels") and "\n" not in str(raised.value)


def test_missing_path_is_reported(tmp_path):
    collection = open_paths([tmp_path / "nowhere"])
    assert collection.studies == [] and collection.errors[0].error == "no such file or folder"


def test_frame_cache_keeps_memory_within_its_budget(tmp_path):
    factory.write_ct_series(tmp_path, 20, rows=128, cols=128)
    (series,) = open_paths([tmp_path]).all_series()
    one = load_frame(series.frames[0]).nbytes
    cache = FrameCache(budget_bytes=5 * one)
    for frame in series.frames:
        cache.get(frame)
    assert cache.used_bytes <= 5 * one
    assert cache.get(series.frames[-1]) is cache.get(series.frames[-1]), "recent frames come from memory"


def test_pixel_spacing_and_imager_spacing(tmp_path):
    ct = factory.write_image(tmp_path / "ct.dcm", modality="CT", pixel_spacing=(0.5, 0.8))
    dx = factory.write_radiograph(tmp_path / "dx.dcm", imager_pixel_spacing=0.15)
    assert only_frame(ct).pixel_spacing() == (0.5, 0.8)
    assert only_frame(dx).pixel_spacing() == (0.15, 0.15)


def test_rgb_renders_unchanged(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    image = load_frame(only_frame(factory.write_image(tmp_path / "rgb.dcm", rgb, photometric="RGB")))
    assert image.is_colour and image.voi_choices() == []
    np.testing.assert_array_equal(image.render(None, invert=False), rgb)


def test_a_dragged_window_reads_in_whole_numbers_and_a_narrow_one_keeps_its_digits():
    from dicom.pixels import Window

    assert Window(-269.685, 1994.53, "", "LINEAR").describe() == "W 1995 L -270"
    assert Window(40, 400, "", "LINEAR").describe() == "W 400 L 40"
    assert Window(0.25, 0.5, "", "LINEAR").describe() == "W 0.5 L 0.25"
