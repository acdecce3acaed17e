"""The DICOM layer's defences, one class of hostile input at a time, on files built here.

The command-line tests (``tests/cli/test_hostile_dicom.py``) run the attacks end to end in a
subprocess with a timeout and a memory limit; these check the layer's own contract in process:
what is refused, with which one line, and that legitimate files still read as pydicom reads them.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless

import dicom.image
from dicom.claims import ITEM_HEADER_BYTES, PixelClaim, check_claim
from dicom.errors import DicomReadError, printable
from dicom.files import file_id_parts
from dicom.image import file_windows, load_frame
from dicom.model_input import model_unit_image
from dicom.reading import BoundedFile
from dicom.series import open_paths
from tests import dicom_factory as factory

# Writing NaN and infinity into DS values is the point of several tests here.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR DS")


def only_frame(path):
    collection = open_paths([path])
    assert collection.errors == []
    (series,) = collection.all_series()
    return series.frames[0]


# --- Escaping the folder -------------------------------------------------------------------


@pytest.mark.parametrize("file_id", [
    "..", ["..", "x.dcm"], ["IMAGES", "..", "..", "x.dcm"], "../x.dcm", "IMAGES/../../x.dcm", "/etc/passwd",
    "\\etc\\passwd", ["", "etc"], [".", "x.dcm"], ["IMAGES", "A\0B"],
])
def test_file_ids_that_could_leave_the_folder_are_refused(file_id):
    assert file_id_parts(file_id) is None


@pytest.mark.parametrize(("file_id", "parts"), [
    ("IM1", ["IM1"]), (["IMAGES", "IM1"], ["IMAGES", "IM1"]), ("IMAGES/IM1", ["IMAGES", "IM1"]),
    (["IMAGES ", "IM1"], ["IMAGES", "IM1"]),
])
def test_ordinary_file_ids_are_relative_paths(file_id, parts):
    assert file_id_parts(file_id) == parts


def test_a_dicomdir_reads_its_own_files_and_refuses_the_rest(tmp_path):
    secret = factory.write_image(tmp_path / "secret.dcm")
    own = factory.write_image(tmp_path / "cd" / "IMAGES" / "IM1")
    dicomdir = factory.write_dicomdir(tmp_path / "cd" / "DICOMDIR", [["IMAGES", "IM1"], ["..", "secret.dcm"],
                                                                    str(secret), ["IMAGES", "GONE"]])
    collection = open_paths([dicomdir])
    assert [frame.path for series in collection.all_series() for frame in series.frames] == [own]
    reasons = [(error.path.name, error.error) for error in collection.errors]
    assert reasons == [("DICOMDIR", "names 2 files outside its folder (..\\secret.dcm, and 1 more); not read"),
                       ("GONE", "listed in the DICOMDIR but missing")]


# --- Special files ---------------------------------------------------------------------------


def test_reads_stop_at_the_end_of_the_file(tmp_path):
    path = tmp_path / "small.bin"
    path.write_bytes(b"0123456789")
    with BoundedFile(io.FileIO(path)) as file:
        assert file.read(4 * 2**30) == b"0123456789", "a 4 GiB length claim reads what is there"
        file.seek(0)
        file.limit("the header", max_bytes=4)
        assert file.read(4) == b"0123"
        with pytest.raises(DicomReadError, match="^the header takes more than 4 bytes; not read$"):
            file.read(1)


def test_a_header_larger_than_its_budget_is_refused(tmp_path):
    path = factory.write_image(tmp_path / "big_header.dcm", extra={"PatientComments": "x"})
    dataset = pydicom.dcmread(path)
    dataset.add_new(0x00091010, "LO", "LIGHTBOX")
    dataset.add_new(0x00091011, "OB", bytes(65 * 2**20))
    dataset.save_as(path, enforce_file_format=True)
    collection = open_paths([path])
    assert collection.errors[0].error == "the header takes more than 64 MiB; not read"


def test_control_characters_and_undecodable_names_print_on_one_line():
    assert printable("a\nb\x1b[2J\udce9") == "a\\nb\\x1b[2J\\udce9"


@pytest.mark.parametrize("vr", [b"LK", b"FD"], ids=["unknown VR", "value too short for its VR"])
def test_a_value_pydicom_cannot_convert_is_dropped_when_read(tmp_path, vr):
    path = factory.write_unconvertible_value(tmp_path / "a.dcm", vr)
    (study,) = open_paths([path]).studies  # grouping reads the Study Description
    assert study.description == "" and "StudyDescription" not in study.series[0].frames[0].header
    assert load_frame(study.series[0].frames[0]).stored.shape == (64, 64)


def test_sequences_nested_too_deep_are_refused(tmp_path):
    factory.write_nested_sequences(tmp_path / "deep.dcm", 40)
    factory.write_nested_sequences(tmp_path / "shallow.dcm", 10)
    collection = open_paths([tmp_path])
    assert [frame.path.name for series in collection.all_series() for frame in series.frames] == ["shallow.dcm"]
    assert [(e.path.name, e.error) for e in collection.errors] == [
        ("deep.dcm", "sequences nested more than 32 deep; not read")]


def test_an_rle_frame_that_overruns_is_decoded_by_pydicom_not_a_panicking_plugin(tmp_path):
    image = load_frame(only_frame(factory.write_rle_overrun(tmp_path / "rle.dcm")))
    assert image.stored.shape == (64, 64) and not image.stored.any()


# --- Memory bombs ----------------------------------------------------------------------------


def claim(**values) -> PixelClaim:
    """The claim of a header holding just ``values``, malformed ones included."""
    dataset = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword, value in values.items():
            setattr(dataset, keyword, value)
    return PixelClaim.of(dataset)


def test_claims_count_the_bytes_each_encoding_needs():
    assert claim(Rows=10, Columns=10, BitsAllocated=1, NumberOfFrames=3).stored_bytes() == 38, "bits packed across frames"
    assert claim(Rows=2, Columns=2, BitsAllocated=8, SamplesPerPixel=3,
                 PhotometricInterpretation="YBR_FULL_422").stored_bytes() == 8, "two samples a pixel"
    assert claim(Rows=512, Columns=512, BitsAllocated=16, SamplesPerPixel=1).frame_bytes() == 512 * 512 * 2
    malformed = claim(Rows=-4, Columns=8, NumberOfFrames="0")
    assert (malformed.frame_bytes(), malformed.frames) == (0, 1), "a malformed value is the smallest claim"


def test_an_encapsulated_frame_needs_at_least_an_item(tmp_path):
    dataset = pydicom.dcmread(factory.write_image(tmp_path / "rle.dcm", transfer_syntax=RLELossless),
                              stop_before_pixels=True)
    dataset.NumberOfFrames = 1000
    check_claim(dataset, 1000 * ITEM_HEADER_BYTES)
    with pytest.raises(DicomReadError, match="^claims 1000 frames of 64 x 64 pixels, 16 bits but holds only 7.8 KiB"):
        check_claim(dataset, 1000 * ITEM_HEADER_BYTES - 1)


def test_a_false_multiframe_claim_is_one_error_and_no_frames(tmp_path):
    factory.write_false_claim(tmp_path / "cine.dcm", rows=64, columns=64, frames=10_000)
    good = factory.write_multiframe(tmp_path / "good.dcm", n_frames=8, rows=16, cols=16)
    collection = open_paths([tmp_path])
    assert [frame.path for series in collection.all_series() for frame in series.frames] == [good] * 8
    (error,) = collection.errors
    assert error.path.name == "cine.dcm" and error.error.startswith("claims 10000 frames")


def test_a_deflated_data_set_reads_and_decodes_as_pydicom_does(tmp_path):
    pixels = factory.sample_pixels(32, 48)
    path = factory.write_image(tmp_path / "deflated.dcm", pixels, transfer_syntax=DeflatedExplicitVRLittleEndian,
                               slope=2, intercept=-5)
    image = load_frame(only_frame(path))
    assert only_frame(path).header.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    np.testing.assert_array_equal(image.stored, pydicom.dcmread(path).pixel_array)
    np.testing.assert_array_equal(image.stored, pixels)
    np.testing.assert_array_equal(image.modality_values(), pixels * 2.0 - 5)


def test_a_deflated_multiframe_within_the_caps_still_reads(tmp_path):
    path = factory.write_deflate_bomb(tmp_path / "small.dcm", 2 * 2**20, rows=32, cols=32)
    (series,) = open_paths([path]).all_series()
    assert len(series.frames) == 1024
    assert load_frame(series.frames[1000]).stored.shape == (32, 32)


def test_running_out_of_memory_is_one_line(tmp_path, monkeypatch):
    frame = only_frame(factory.write_image(tmp_path / "a.dcm"))

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(dicom.image, "pixel_array", exhausted)
    with pytest.raises(DicomReadError, match="^cannot decode pixels: not enough memory$"):
        load_frame(frame)


def test_a_whole_read_past_the_budget_is_refused_before_reading(tmp_path, monkeypatch):
    path = factory.write_image(tmp_path / "a.dcm", transfer_syntax=ExplicitVRLittleEndian)
    frame = only_frame(path)
    monkeypatch.setattr(dicom.claims, "MAX_WHOLE_READ_BYTES", 1000)
    monkeypatch.setattr(dicom.image, "_decode_from_file", lambda frame: 1 / 0)
    with pytest.raises(DicomReadError, match="^cannot decode pixels: this file must be read whole"):
        load_frame(frame)


# --- Values that are not finite --------------------------------------------------------------


NOT_FINITE_CASES = {
    "slope 1e308": {"RescaleSlope": "1e308", "RescaleIntercept": "0"},
    "slope NaN": {"RescaleSlope": "NaN", "RescaleIntercept": "0"},
    "intercept -inf": {"RescaleSlope": "1", "RescaleIntercept": "-inf"},
    "intercept inf": {"RescaleSlope": "1", "RescaleIntercept": "Infinity"},
}


@pytest.mark.parametrize("extra", NOT_FINITE_CASES.values(), ids=NOT_FINITE_CASES.keys())
@pytest.mark.parametrize("window", [None, (40.0, 400.0)], ids=["file window", "card window"])
def test_a_rescale_that_is_not_finite_is_not_explained(tmp_path, extra, window):
    image = load_frame(only_frame(factory.write_image(tmp_path / "ct.dcm", modality="CT", extra=extra)))
    with pytest.raises(ValueError, match="not all finite numbers"):
        model_unit_image(image, window)


def test_nan_float_pixels_are_not_explained_but_still_shown(tmp_path):
    values = np.array([[0.0, 1.0], [np.nan, np.inf]], np.float32)
    image = load_frame(only_frame(factory.write_float_image(tmp_path / "map.dcm", values)))
    with pytest.raises(ValueError, match="not all finite numbers"):
        model_unit_image(image, None)
    shown = image.render(image.default_voi(), invert=False)
    assert shown[0, 0] == 0 and shown[0, 1] == 255 and shown[1, 0] == shown[1, 1] == 0


def test_a_nan_model_window_is_refused(tmp_path):
    image = load_frame(only_frame(factory.write_image(tmp_path / "a.dcm")))
    with pytest.raises(ValueError, match="^the window gives values that are not finite"):
        model_unit_image(image, (float("nan"), 400.0))


@pytest.mark.parametrize(("center", "width"), [("NaN", "400"), ("40", "inf"), ("-inf", "400"), ("40", "NaN")])
def test_a_window_that_is_not_finite_is_skipped_like_a_missing_one(tmp_path, center, width):
    path = factory.write_image(tmp_path / "a.dcm", windows=[(1, 1), (300, 600)],
                               extra={"WindowCenter": [center, "300"], "WindowWidth": [width, "600"]})
    frame = only_frame(path)
    assert [(w.center, w.width) for w in file_windows(frame)] == [(300.0, 600.0)]
    unit = model_unit_image(load_frame(frame), None)
    assert np.isfinite(unit).all()


def test_an_overflowing_rescale_displays_without_warnings(tmp_path):
    image = load_frame(only_frame(factory.write_image(tmp_path / "ct.dcm", modality="CT", slope=1,
                                                      extra={"RescaleSlope": "1e308"})))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = image.grey.auto_window()
        shown = image.render(None, invert=False)
    assert np.isfinite([auto.center, auto.width]).all() and shown.dtype == np.uint8


@pytest.mark.parametrize("extra", [
    {"ImagePositionPatient": ["0", "0", "NaN"]},
    {"ImagePositionPatient": ["0", "0", "1e308"], "ImageOrientationPatient": ["1e308", "0", "0", "0", "1e308", "0"]},
    {"PixelSpacing": ["inf", "1"]},
])
def test_geometry_that_is_not_finite_is_as_good_as_none(tmp_path, extra):
    frame = only_frame(factory.write_image(tmp_path / "a.dcm", pixel_spacing=1.0, position=(0, 0, 0),
                                           orientation=factory.AXIAL, extra=extra))
    if "PixelSpacing" in extra:
        assert frame.pixel_spacing() is None
    else:
        assert frame.position_along_normal() is None
