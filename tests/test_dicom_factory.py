"""The test-file factory reads back as written, so tests built on it can trust it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import (
    BasicTextSRStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
)

from tests.dicom_factory import (
    sample_pixels,
    write_ct_series,
    write_image,
    write_junk,
    write_multiframe,
    write_non_image,
    write_radiograph,
    write_truncated,
)


def _is_part10(path: Path) -> bool:
    """Return whether the file starts with a 128-byte preamble and the DICM prefix."""
    return path.read_bytes()[128:132] == b"DICM"


# --- write_image -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "bits_stored"),
    [("uint8", 8), ("int8", 8), ("uint16", 16), ("uint16", 12), ("int16", 16), ("int16", 12)],
)
def test_image_pixels_and_pixel_module_round_trip(tmp_path, dtype, bits_stored):
    pixels = sample_pixels(40, 30, dtype=dtype, bits_stored=bits_stored, seed=3)

    ds = pydicom.dcmread(write_image(tmp_path / "a.dcm", pixels, bits_stored=bits_stored))

    np.testing.assert_array_equal(ds.pixel_array, pixels)
    assert (ds.Rows, ds.Columns) == (40, 30)
    assert ds.BitsAllocated == np.dtype(dtype).itemsize * 8
    assert (ds.BitsStored, ds.HighBit) == (bits_stored, bits_stored - 1)
    assert ds.PixelRepresentation == (np.dtype(dtype).kind == "i")
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation) == (1, "MONOCHROME2")


def test_image_is_a_part10_file_with_consistent_meta(tmp_path):
    path = write_image(tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)

    assert _is_part10(path)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == SecondaryCaptureImageStorage
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "PatientName", "PatientID"):
        assert ds.get(keyword), keyword
    assert ds.Modality == "OT"


def test_sample_pixels_are_deterministic_and_fill_the_range():
    first = sample_pixels(dtype="uint16", bits_stored=12, seed=7)

    np.testing.assert_array_equal(first, sample_pixels(dtype="uint16", bits_stored=12, seed=7))
    assert not np.array_equal(first, sample_pixels(dtype="uint16", bits_stored=12, seed=8))
    assert first.min() < 400 and 3300 < first.max() < 4096


@pytest.mark.parametrize(
    "syntax",
    [ImplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless, JPEG2000Lossless],
    ids=lambda uid: uid.name,
)
def test_other_transfer_syntaxes_keep_the_pixels(tmp_path, syntax):
    pixels = sample_pixels(dtype="int16", bits_stored=12)

    ds = pydicom.dcmread(write_image(tmp_path / "a.dcm", pixels, transfer_syntax=syntax))

    assert ds.file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(ds.pixel_array, pixels)


def test_rgb_image(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 25, 3), dtype=np.uint8)

    ds = pydicom.dcmread(write_image(tmp_path / "rgb.dcm", pixels, photometric="RGB"))

    np.testing.assert_array_equal(ds.pixel_array, pixels)
    assert (ds.SamplesPerPixel, ds.PlanarConfiguration, ds.BitsAllocated) == (3, 0, 8)
    assert ds.PhotometricInterpretation == "RGB"


def test_several_windows_are_multi_valued_with_explanations(tmp_path):
    windows = [(40, 400, "SOFT TISSUE"), (-600, 1500, "LUNG"), (300, 1500)]

    ds = pydicom.dcmread(write_image(tmp_path / "a.dcm", windows=windows))

    assert list(ds.WindowCenter) == [40, -600, 300]
    assert list(ds.WindowWidth) == [400, 1500, 1500]
    assert list(ds.WindowCenterWidthExplanation) == ["SOFT TISSUE", "LUNG", ""]


def test_one_window_is_single_valued_without_explanation(tmp_path):
    ds = pydicom.dcmread(write_image(tmp_path / "a.dcm", windows=[(2047.5, 4095.25)]))

    assert ds.WindowCenter == 2047.5 and ds.WindowWidth == 4095.25
    assert "WindowCenterWidthExplanation" not in ds


def test_rescale_is_applied_by_the_modality_lut(tmp_path):
    pixels = sample_pixels(dtype="uint16", bits_stored=12)

    ds = pydicom.dcmread(write_image(tmp_path / "a.dcm", pixels, slope=0.5, intercept=-1024))

    np.testing.assert_allclose(apply_modality_lut(ds.pixel_array, ds), pixels * 0.5 - 1024)


def test_voi_lut_descriptor_and_data(tmp_path):
    pixels = sample_pixels(dtype="uint16", bits_stored=12)
    table = (np.arange(4096) // 16).astype(np.uint16)  # 12 bits in, 8 bits out

    ds = pydicom.dcmread(write_image(tmp_path / "a.dcm", pixels, voi_lut=(0, 8, table)))

    item = ds.VOILUTSequence[0]
    assert list(item.LUTDescriptor) == [4096, 0, 8]
    assert list(item.LUTData) == table.tolist()
    # Not through pydicom's apply_voi_lut: in pydicom 3.0.2 an 8-bit LUT's indices are held in
    # uint8, so inputs above 255 wrap around. A 16-bit table is checked through it below.
    lut = np.asarray(item.LUTData)
    np.testing.assert_array_equal(lut[ds.pixel_array], pixels // 16)


def test_voi_lut_with_an_offset_applies_through_pydicom(tmp_path):
    pixels = sample_pixels(dtype="uint16", bits_stored=12)
    table = np.arange(2048, dtype=np.uint16) * 2  # 11..16 bits, first mapped value 1000

    ds = pydicom.dcmread(write_image(tmp_path / "a.dcm", pixels, voi_lut=(1000, 16, table)))

    assert list(ds.VOILUTSequence[0].LUTDescriptor) == [2048, 1000, 16]
    expected = table[np.clip(pixels.astype(int) - 1000, 0, 2047)]
    np.testing.assert_array_equal(apply_voi_lut(ds.pixel_array, ds), expected)


def test_signed_lut_descriptor_keeps_its_negative_first_value(tmp_path):
    pixels = sample_pixels(dtype="int16", bits_stored=12)
    table = np.arange(4096, dtype=np.uint16)

    ds = pydicom.dcmread(
        write_image(tmp_path / "a.dcm", pixels, modality_lut=(-2048, 16, table))
    )

    assert list(ds.ModalityLUTSequence[0].LUTDescriptor) == [4096, -2048, 16]
    np.testing.assert_array_equal(apply_modality_lut(ds.pixel_array, ds), pixels + 2048)


def test_geometry_and_identity_options(tmp_path):
    ds = pydicom.dcmread(
        write_image(
            tmp_path / "a.dcm",
            modality="CT",
            pixel_spacing=(0.5, 0.7),
            imager_pixel_spacing=0.2,
            position=(-10, 20.5, 30),
            orientation=(1, 0, 0, 0, 1, 0),
            study_uid="1.2.3",
            series_uid="1.2.3.4",
            series_number=5,
            instance_number=6,
        )
    )

    assert ds.SOPClassUID == CTImageStorage
    assert list(ds.PixelSpacing) == [0.5, 0.7]
    assert list(ds.ImagerPixelSpacing) == [0.2, 0.2]
    assert list(ds.ImagePositionPatient) == [-10, 20.5, 30]
    assert list(ds.ImageOrientationPatient) == [1, 0, 0, 0, 1, 0]
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == ("1.2.3", "1.2.3.4")
    assert (ds.SeriesNumber, ds.InstanceNumber) == (5, 6)


def test_extra_sets_and_deletes_elements(tmp_path):
    ds = pydicom.dcmread(
        write_image(
            tmp_path / "a.dcm",
            windows=[(1, 2)],
            extra={"PatientName": "Doe^Jane", "WindowWidth": None},
        )
    )

    assert ds.PatientName == "Doe^Jane"
    assert "WindowCenter" in ds and "WindowWidth" not in ds


def test_values_beyond_bits_stored_are_refused(tmp_path):
    with pytest.raises(ValueError, match="bits stored"):
        write_image(tmp_path / "a.dcm", np.full((4, 4), 4096, np.uint16), bits_stored=12)


# --- write_ct_series -------------------------------------------------------------------------


def _along_normal(ds: pydicom.Dataset) -> float:
    """Return the slice's position along its own normal."""
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float)))


def test_ct_series_names_are_not_in_anatomical_order(tmp_path):
    paths = write_ct_series(tmp_path, 6)

    by_name = sorted(paths, key=lambda p: p.name)
    assert by_name != paths and by_name != paths[::-1]
    assert sorted(tmp_path.iterdir()) == by_name


@pytest.mark.parametrize("tilt", [0.0, 17.0])
def test_ct_series_comes_back_in_anatomical_order(tmp_path, tilt):
    paths = write_ct_series(tmp_path, 5, spacing=2.5, tilt=tilt)
    slices = [pydicom.dcmread(p) for p in paths]

    steps = np.diff([_along_normal(ds) for ds in slices])
    np.testing.assert_allclose(steps, 2.5, atol=1e-6)
    assert [ds.InstanceNumber for ds in slices] == [1, 2, 3, 4, 5]
    assert len({ds.SOPInstanceUID for ds in slices}) == 5
    assert len({(ds.StudyInstanceUID, ds.SeriesInstanceUID) for ds in slices}) == 1


def test_ct_series_holds_hounsfield_units(tmp_path):
    ds = pydicom.dcmread(write_ct_series(tmp_path, 3)[1])
    hu = apply_modality_lut(ds.pixel_array, ds)

    assert ds.SOPClassUID == CTImageStorage
    assert (ds.RescaleIntercept, ds.RescaleSlope) == (-1024, 1)
    assert ds.BitsStored == 12
    assert np.median(hu[0]) < -950  # air at the edge
    assert abs(np.median(hu[hu.shape[0] // 2]) - 40) < 100  # soft tissue in the middle row
    assert hu.max() > 600  # the bone ring
    assert list(ds.WindowCenterWidthExplanation) == ["SOFT TISSUE", "BONE"]


def test_ct_series_is_deterministic_and_slices_differ(tmp_path):
    first = [pydicom.dcmread(p).pixel_array for p in write_ct_series(tmp_path / "a", 4)]
    second = [pydicom.dcmread(p).pixel_array for p in write_ct_series(tmp_path / "b", 4)]

    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])


def test_ct_series_descending_instance_numbers_and_plain_names(tmp_path):
    paths = write_ct_series(tmp_path, 4, instance_numbers="descending", shuffle_names=False)

    assert [p.name for p in paths] == sorted(p.name for p in paths)
    assert [pydicom.dcmread(p).InstanceNumber for p in paths] == [4, 3, 2, 1]


# --- write_multiframe ------------------------------------------------------------------------


def test_plain_multiframe(tmp_path):
    frames = np.stack([sample_pixels(16, 12, seed=k) for k in range(5)])

    ds = pydicom.dcmread(write_multiframe(tmp_path / "mf.dcm", frames))

    assert ds.SOPClassUID == MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    assert ds.NumberOfFrames == 5
    np.testing.assert_array_equal(ds.pixel_array, frames)
    assert "PerFrameFunctionalGroupsSequence" not in ds


def test_default_frames_differ(tmp_path):
    ds = pydicom.dcmread(write_multiframe(tmp_path / "mf.dcm", n_frames=3))

    assert ds.pixel_array.shape == (3, 64, 64)
    assert ds.pixel_array[0].mean() < ds.pixel_array[1].mean() < ds.pixel_array[2].mean()


def test_single_frame_multiframe_keeps_number_of_frames(tmp_path):
    ds = pydicom.dcmread(write_multiframe(tmp_path / "mf.dcm", n_frames=1))

    assert ds.NumberOfFrames == 1


def test_enhanced_multiframe_has_functional_groups(tmp_path):
    ds = pydicom.dcmread(
        write_multiframe(
            tmp_path / "mf.dcm",
            n_frames=4,
            modality="CT",
            functional_groups=True,
            slope=1,
            intercept=-1024,
            windows=[(40, 400)],
            spacing=3.0,
        )
    )

    assert ds.SOPClassUID == EnhancedCTImageStorage
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert shared.PixelValueTransformationSequence[0].RescaleIntercept == -1024
    assert shared.FrameVOILUTSequence[0].WindowCenter == 40
    assert list(shared.PlaneOrientationSequence[0].ImageOrientationPatient) == [1, 0, 0, 0, 1, 0]
    per_frame = ds.PerFrameFunctionalGroupsSequence
    assert len(per_frame) == ds.NumberOfFrames == 4
    z = [float(g.PlanePositionSequence[0].ImagePositionPatient[2]) for g in per_frame]
    assert z == [0.0, 3.0, 6.0, 9.0]
    assert "RescaleIntercept" not in ds and "WindowCenter" not in ds


# --- write_radiograph ------------------------------------------------------------------------


def test_radiograph_tags(tmp_path):
    ds = pydicom.dcmread(write_radiograph(tmp_path / "dx.dcm", rows=100, cols=80))

    assert ds.SOPClassUID == DigitalXRayImageStorageForPresentation
    assert (ds.Modality, ds.Rows, ds.Columns) == ("DX", 100, 80)
    assert (ds.BitsAllocated, ds.BitsStored) == (16, 12)
    assert ds.pixel_array.max() < 4096
    assert list(ds.ImagerPixelSpacing) == [0.15, 0.15]
    assert ds.WindowWidth > 0 and ds.ViewPosition == "PA"


def test_monochrome1_radiograph_stores_the_negative(tmp_path):
    mono1 = pydicom.dcmread(write_radiograph(tmp_path / "1.dcm", photometric="MONOCHROME1"))
    mono2 = pydicom.dcmread(write_radiograph(tmp_path / "2.dcm", photometric="MONOCHROME2"))

    assert mono1.PhotometricInterpretation == "MONOCHROME1"
    assert np.abs(4095 - mono1.pixel_array.astype(int) - mono2.pixel_array).max() <= 1
    assert abs(mono1.WindowCenter - (4095 - mono2.WindowCenter)) <= 1


def test_radiograph_as_cr(tmp_path):
    ds = pydicom.dcmread(write_radiograph(tmp_path / "cr.dcm", modality="CR", rows=32, cols=32))

    assert ds.Modality == "CR" and ds.SOPClassUID.name.startswith("Computed Radiography")


# --- bad input -------------------------------------------------------------------------------


def test_junk_is_not_dicom(tmp_path):
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(write_junk(tmp_path / "junk.dcm"))


def test_junk_behind_a_fake_preamble_reads_as_a_dataset_without_an_image(tmp_path):
    # pydicom is lenient here: no exception, but no file meta and no pixel data either, so a
    # reader has to check for the image itself.
    path = write_junk(tmp_path / "junk.dcm", fake_preamble=True)
    ds = pydicom.dcmread(path)

    assert _is_part10(path)
    assert "PixelData" not in ds and "TransferSyntaxUID" not in ds.file_meta


def test_truncated_file_reads_its_header_but_not_its_pixels(tmp_path):
    whole = write_image(tmp_path / "whole.dcm")
    cut = write_truncated(tmp_path / "cut.dcm", keep=0.3)
    ds = pydicom.dcmread(cut)

    assert cut.stat().st_size < whole.stat().st_size
    assert (ds.Rows, ds.Columns) == (64, 64)
    with pytest.raises(ValueError, match="less than expected"):
        _ = ds.pixel_array


def test_non_image_has_no_pixel_data(tmp_path):
    path = write_non_image(tmp_path / "sr.dcm", text="Small left effusion.")
    ds = pydicom.dcmread(path)

    assert _is_part10(path)
    assert ds.SOPClassUID == BasicTextSRStorage and ds.Modality == "SR"
    assert "PixelData" not in ds
    assert ds.ContentSequence[0].TextValue == "Small left effusion."
