"""pydicom's own test files, written by others and broken in many ways, as a corpus.

Every file pydicom and its plugins can decode must show the same values as pydicom's
``apply_modality_lut``; every other file must be refused with one line, never a traceback.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from dicom.files import DicomReadError
from dicom.image import load_frame
from dicom.series import Frame, frame_count, open_paths

CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_reference(frame: Frame) -> np.ndarray | None:
    """What pydicom shows for a frame, or None when pydicom cannot decode it either.

    Enhanced files keep their rescale inside functional groups, which ``apply_modality_lut``
    does not look into; the frame's own rescale is copied to the top level for it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = pydicom.dcmread(frame.path, force=True)
            pixels = dataset.pixel_array
        except Exception:  # noqa: BLE001 - any failure means pydicom cannot show it
            return None
    if frame_count(dataset) > 1:
        pixels = pixels[frame.index]
    if pixels.ndim == 3 or "PALETTE" in str(dataset.get("PhotometricInterpretation", "")):
        return pixels
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        value = frame.attribute("PixelValueTransformationSequence", keyword)
        if value is not None:
            setattr(dataset, keyword, value)
    return apply_modality_lut(pixels, dataset)


@pytest.fixture(scope="module")
def corpus():
    return open_paths([CORPUS])


def test_corpus_is_large_enough_to_mean_something(corpus):
    frames = [f for s in corpus.all_series() for f in s.frames]
    assert len({f.path for f in frames}) >= 80
    syntaxes = {str(f.header.file_meta.get("TransferSyntaxUID", "")) for f in frames if hasattr(f.header, "file_meta")}
    compressed = {pydicom.uid.JPEGBaseline8Bit, pydicom.uid.JPEGLosslessSV1, pydicom.uid.JPEGLSLossless,
                  pydicom.uid.JPEG2000Lossless, pydicom.uid.RLELossless, pydicom.uid.DeflatedExplicitVRLittleEndian}
    assert compressed <= syntaxes


def test_every_decodable_image_matches_pydicom(corpus):
    checked, refused = 0, []
    for series in corpus.all_series():
        for frame in series.frames:
            reference = pydicom_reference(frame)
            try:
                image = load_frame(frame)
            except DicomReadError as error:
                assert reference is None, f"{frame.label()}: pydicom reads it, we refused: {error}"
                assert str(error) and "\n" not in str(error)
                refused.append(frame.path.name)
                continue
            assert reference is not None, f"{frame.label()}: shown, though pydicom cannot decode it"
            if image.is_colour:
                np.testing.assert_array_equal(image.stored, reference, err_msg=frame.label())
                assert image.render(None, invert=False).dtype == np.uint8
            else:
                np.testing.assert_array_equal(image.modality_values(), reference, err_msg=frame.label())
                shown = image.render(image.default_voi(), image.inverted_by_default)
                assert shown.shape == reference.shape and shown.dtype == np.uint8
            checked += 1
    assert checked >= 100
    assert {"MR_truncated.dcm", "JPEG-lossy.dcm"} <= set(refused)


def test_files_without_an_image_are_refused_with_one_line(corpus):
    reasons = {e.path.name: e.error for e in corpus.errors}
    for name in ("rtplan.dcm", "waveform_ecg.dcm", "README.txt", "test-SR.dcm", "zipMR.gz"):
        assert name in reasons
    assert reasons["rtplan.dcm"] == "no image in this DICOM file (RT Plan Storage)"
    assert reasons["README.txt"] == "not a DICOM file"
    assert all(reason and "\n" not in reason for reason in reasons.values())


def test_dicomdir_opens_the_files_it_lists():
    collection = open_paths([CORPUS / "dicomdirtests" / "DICOMDIR"])
    series = collection.all_series()
    assert collection.errors == []
    assert len(series) == 13 and sum(len(s.frames) for s in series) == 31
    assert {s.modality for s in series} == {"CR", "CT", "MR"}
