"""Exported DICOM: valid by dciodvfy, readable by pydicom, filed with the image it explains."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom import config
from pydicom.uid import ParametricMapStorage, SecondaryCaptureImageStorage

from dicom.bundled import DEMO_MODEL, DEMO_STUDY
from dicom.image import load_frame
from dicom.model_input import model_unit_image
from dicom.series import open_paths
from explain.devices import pick_device
from explain.methods import METHODS
from explain.model_file import load_model
from explain.preprocessing import to_model_input
from exports.dicom_objects import (
    ExportError,
    explanation_to_export,
    pseudonymous_uid,
    write_parametric_map,
    write_secondary_capture,
)
from tests.dicom_factory import write_ct_series, write_multiframe, write_radiograph

#: dicom3tools 1.00~20220618 checks Minimum/Maximum Stored Value Mapped (FD, PS3.3 C.7.6.16.2.26)
#: as if they were strings with enumerated values; the standard gives them none. Nothing else is
#: let through.
VALIDATOR_DEFECTS = ("Error - Non-string attribute while verifying string enumerated value for attribute <Minimum Stored",
                     "Error - Non-string attribute while verifying string enumerated value for attribute <Maximum Stored")


def dciodvfy_errors(path: Path) -> list[str]:
    """Every error dciodvfy (David Clunie's IOD verifier) reports for a file."""
    if shutil.which("dciodvfy") is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy is missing: scripts/setup installs Debian's dicom3tools")
        pytest.skip("dciodvfy not installed (scripts/setup installs dicom3tools when run as root)")
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (report.stdout + report.stderr).splitlines()
    return [line for line in lines if line.startswith(("Error", "Abort")) and not line.startswith(VALIDATOR_DEFECTS)]


def strict_read(path: Path) -> pydicom.Dataset:
    """Read back with pydicom raising on any value that breaks its VR."""
    mode = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    try:
        dataset = pydicom.dcmread(path)
        for element in dataset.iterall():
            element.value  # noqa: B018 - converting each value is what validates it
        return dataset
    finally:
        config.settings.reading_validation_mode = mode


def source_reference(dataset: pydicom.Dataset) -> pydicom.Dataset:
    """The Source Image Sequence item, wherever the IOD keeps it."""
    if "PerFrameFunctionalGroupsSequence" in dataset:
        return dataset.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    return dataset.SourceImageSequence[0]


@pytest.fixture(scope="module")
def demo():
    """A real occlusion explanation of the demo study by the demo model (coarse windows: quick)."""
    image = load_frame(open_paths([DEMO_STUDY]).all_series()[0].frames[0])
    model = load_model(DEMO_MODEL, pick_device("cpu"))
    method = METHODS["occlusion"]
    target = model.card.label_index("effusion")
    final = list(method.run(model, to_model_input(model_unit_image(image, model.card.window), model.card.input), target,
                            method.make_params({"window": 32, "stride": 32})))[-1]
    result = explanation_to_export(image, final.heatmap, method=method.title, model_name=model.card.name,
                                   target="effusion", score=final.figures["score"], units="drop in probability",
                                   figures={"aopc": 0.185, "deletion_auc": 0.701},
                                   verdict="The map points at what the model uses.")
    return image, result


def written_and_valid(write, result, path):
    """Write an export, check it with dciodvfy and read it back strictly."""
    write(result, path)
    assert dciodvfy_errors(path) == []
    return strict_read(path)


def test_a_parametric_map_of_the_demo_is_valid_and_carries_the_map_exactly(demo, tmp_path):
    image, result = demo
    source = image.frame.header
    pm = written_and_valid(write_parametric_map, result, tmp_path / "pm.dcm")
    assert pm.SOPClassUID == ParametricMapStorage
    assert pm.pixel_array.dtype == np.float32 and pm.pixel_array.shape == (source.Rows, source.Columns)
    np.testing.assert_array_equal(pm.pixel_array, np.nan_to_num(result.heatmap))
    assert (pm.StudyInstanceUID, pm.PatientID, str(pm.PatientName)) == (
        source.StudyInstanceUID, source.PatientID, str(source.PatientName))
    assert pm.SeriesInstanceUID != source.SeriesInstanceUID and pm.SOPInstanceUID != source.SOPInstanceUID
    assert source_reference(pm).ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert pm.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    shared = pm.SharedFunctionalGroupsSequence[0]
    mapping = shared.RealWorldValueMappingSequence[0]
    assert mapping.LUTExplanation == "drop in probability" and mapping.RealWorldValueSlope == 1.0
    assert pm.PixelPresentation == "COLOR_RANGE" and pm.RedPaletteColorLookupTableDescriptor == [256, 0, 16]
    assert shared.StoredValueColorRangeSequence[0].MaximumStoredValueMapped == pytest.approx(result.levels[1])
    # A radiograph has no frame of reference: the map gets one, with the detector's spacing.
    assert "FrameOfReferenceUID" not in source and pm.FrameOfReferenceUID
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [0.35, 0.35]
    assert hd.pm.ParametricMap.from_dataset(pm).SOPInstanceUID == pm.SOPInstanceUID


def test_a_secondary_capture_of_the_demo_is_valid_labelled_and_shows_the_overlay(demo, tmp_path):
    image, result = demo
    source = image.frame.header
    sc = written_and_valid(write_secondary_capture, result, tmp_path / "sc.dcm")
    assert sc.SOPClassUID == SecondaryCaptureImageStorage and sc.PhotometricInterpretation == "RGB"
    np.testing.assert_array_equal(sc.pixel_array, result.overlay())
    assert not np.array_equal(sc.pixel_array[..., 0], sc.pixel_array[..., 2]), "the heat is in colour"
    assert sc.SeriesDescription == f"AI explanation: Occlusion, effusion {result.score:.2f}"
    for fact in ("AI explanation", "Occlusion", "Pleural effusion (demo)", "effusion", f"{result.score:.3f}",
                 "AOPC, map order 0.185", "The map points at what the model uses."):
        assert fact in sc.ImageComments
    assert sc.ImageType[0] == "DERIVED" and sc.BurnedInAnnotation == "NO"
    assert (sc.StudyInstanceUID, sc.PatientID) == (source.StudyInstanceUID, source.PatientID)
    assert source_reference(sc).ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert list(sc.PatientOrientation) == list(source.PatientOrientation)


def test_de_identified_exports_carry_no_name_or_id_and_still_belong_together(demo, tmp_path):
    image, result = demo
    source = image.frame.header
    written = []
    for name, write in (("pm.dcm", write_parametric_map), ("sc.dcm", write_secondary_capture)):
        path = tmp_path / name
        write(result, path, deidentify=True)
        assert dciodvfy_errors(path) == []
        raw = path.read_bytes()
        for identifying in (str(source.PatientName), source.PatientID, source.AccessionNumber,
                            source.InstitutionName, source.StudyInstanceUID, source.SOPInstanceUID):
            assert identifying.encode() not in raw, f"{identifying} left in {name}"
        dataset = strict_read(path)
        assert str(dataset.PatientName) == "" and dataset.PatientID.startswith("LB-")
        assert dataset.PatientIdentityRemoved == "YES" and dataset.StudyDate == ""
        assert dataset.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert source_reference(dataset).ReferencedSOPInstanceUID == pseudonymous_uid(source.SOPInstanceUID)
        assert "AI explanation" in dataset.SeriesDescription, "our own labels stay (clean descriptors)"
        written.append(dataset)
    pm, sc = written
    assert pm.StudyInstanceUID == sc.StudyInstanceUID == pseudonymous_uid(source.StudyInstanceUID)
    assert pm.PatientID == sc.PatientID


def test_a_ct_slice_lends_the_map_its_own_frame_of_reference_and_position(tmp_path):
    write_ct_series(tmp_path / "ct", 3)
    image = load_frame(open_paths([tmp_path / "ct"]).all_series()[0].frames[1])
    heat = np.zeros((8, 8), dtype=np.float32)
    heat[2, 5] = 0.4
    result = explanation_to_export(image, heat, method="Occlusion", model_name="m", target="t", score=0.5)
    pm = write_parametric_map(result, tmp_path / "pm.dcm")
    assert dciodvfy_errors(tmp_path / "pm.dcm") == []
    source = image.frame.header
    assert pm.FrameOfReferenceUID == source.FrameOfReferenceUID
    position = pm.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    assert [float(v) for v in position] == [float(v) for v in source.ImagePositionPatient]
    hot = np.unravel_index(np.argmax(strict_read(tmp_path / "pm.dcm").pixel_array), (64, 64))
    assert 16 <= hot[0] < 24 and 40 <= hot[1] < 48, "the model grid's hot cell lands on the same anatomy"


def test_a_frame_of_an_enhanced_file_is_referenced_by_its_number(tmp_path):
    path = write_multiframe(tmp_path / "mf.dcm", functional_groups=True, modality="CT")
    image = load_frame(open_paths([path]).all_series()[0].frames[3])
    result = explanation_to_export(image, np.ones((4, 4), np.float32), method="Occlusion", model_name="m",
                                   target="t", score=0.5)
    pm = write_parametric_map(result, tmp_path / "pm.dcm")
    sc = write_secondary_capture(result, tmp_path / "sc.dcm")
    assert dciodvfy_errors(tmp_path / "pm.dcm") == [] and dciodvfy_errors(tmp_path / "sc.dcm") == []
    assert source_reference(pm).ReferencedFrameNumber == source_reference(sc).ReferencedFrameNumber == 4
    position = pm.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    assert list(position) == list(image.frame.attribute("PlanePositionSequence", "ImagePositionPatient"))


def test_missing_identifiers_stay_empty_and_are_never_invented(tmp_path):
    path = write_radiograph(tmp_path / "dx.dcm", rows=40, cols=30)
    dataset = pydicom.dcmread(path)
    del dataset.PatientID
    dataset.PatientName = ""
    dataset.save_as(path)
    image = load_frame(open_paths([path]).all_series()[0].frames[0])
    result = explanation_to_export(image, np.ones((40, 30), np.float32), method="Occlusion", model_name="m",
                                   target="t", score=0.5)
    for write, name in ((write_parametric_map, "pm.dcm"), (write_secondary_capture, "sc.dcm")):
        write(result, tmp_path / name)
        written = strict_read(tmp_path / name)
        assert written.PatientID == "" and str(written.PatientName) == ""


def test_burned_in_sources_are_refused_when_de_identifying_and_bad_paths_say_why(tmp_path):
    path = write_radiograph(tmp_path / "dx.dcm", rows=40, cols=30, extra={"BurnedInAnnotation": "YES"})
    image = load_frame(open_paths([path]).all_series()[0].frames[0])
    result = explanation_to_export(image, np.ones((40, 30), np.float32), method="Occlusion", model_name="m",
                                   target="t", score=0.5)
    with pytest.raises(ExportError, match="burned-in annotation"):
        write_secondary_capture(result, tmp_path / "sc.dcm", deidentify=True)
    assert write_secondary_capture(result, tmp_path / "sc.dcm").BurnedInAnnotation == "YES"
    with pytest.raises(ExportError, match="cannot write") as error:
        write_parametric_map(result, tmp_path / "missing" / "pm.dcm")
    assert "\n" not in str(error.value)
