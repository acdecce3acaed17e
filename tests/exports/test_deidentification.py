"""De-identified exports hold nothing of a hostile source but what they need, and refuse what they cannot clean.

Each test builds the hostile input itself: a source with every attribute of the data dictionary
filled with a marker (:mod:`tests.exports.hostile_sources`), burned-in annotation written as a
hostile file would, sequences nested a hundred deep.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from exports.deidentify import FROM_SOURCE, deidentified_source
from exports.dicom_objects import (
    MAX_NESTING,
    ExportedExplanation,
    ExportError,
    pseudonymous_patient_id,
    pseudonymous_uid,
    write_parametric_map,
    write_secondary_capture,
)
from exports.key_image_report import write_report
from tests.dicom_factory import nested_sequence, write_ct_series, write_multiframe, write_radiograph
from tests.exports.hostile_sources import (
    MARKED_UID_ROOT,
    MARKER,
    leaked_in,
    mark_everything,
    reread,
)
from tests.exports.test_dicom_objects import dciodvfy_errors, source_reference

#: The three kinds of source an export meets: no frame of reference, a slice, a frame of an enhanced file.
SOURCES = {
    "radiograph": lambda folder: (write_radiograph(folder / "dx.dcm", rows=40, cols=30), 0),
    "ct slice": lambda folder: (sorted(write_ct_series(folder / "ct", 2, rows=32, cols=32))[0], 0),
    "enhanced frame": lambda folder: (write_multiframe(folder / "mf.dcm", n_frames=4, rows=32, cols=32,
                                                       functional_groups=True, modality="CT"), 2),
}
WRITERS = {"pm.dcm": write_parametric_map, "sc.dcm": write_secondary_capture}


def explanation_of(header: Dataset, frame: int = 0) -> ExportedExplanation:
    """A finished explanation of ``header``'s image, as the exports take it (no model needed)."""
    rows, columns = int(header.Rows), int(header.Columns)
    heat = np.zeros((rows, columns), np.float32)
    heat[rows // 3, columns // 2] = 0.8
    return ExportedExplanation(header, frame, np.full((rows, columns), 90, np.uint8), heat, "Occlusion",
                               "Pleural effusion (demo)", "effusion", 0.91, "drop in probability",
                               {"aopc": 0.2}, "The map points at what the model uses.")


def hostile_source(folder: Path, kind: str) -> tuple[Dataset, dict[int, object], int]:
    """A source of ``kind`` with every attribute filled with a marker, as written and read back."""
    path, frame = SOURCES[kind](folder)
    dataset = pydicom.dcmread(path)
    planted = mark_everything(dataset)
    dataset.PatientOrientation = [f"{MARKER}A", f"{MARKER}F"]  # two values, each could be a name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset.save_as(folder / "hostile.dcm")
    return reread(folder / "hostile.dcm"), planted, frame


@pytest.mark.parametrize("kind", SOURCES)
def test_a_source_filled_everywhere_leaves_nothing_in_de_identified_exports(kind, tmp_path):
    header, planted, frame = hostile_source(tmp_path, kind)
    result = explanation_of(header, frame)
    written = {}
    for name, write in WRITERS.items():
        write(result, tmp_path / name, deidentify=True)
        written[name] = reread(tmp_path / name)
        assert leaked_in(written[name], planted) == [], f"{name} carries the source's values"
        raw = (tmp_path / name).read_bytes()
        assert MARKER.encode() not in raw and MARKED_UID_ROOT.encode() not in raw, f"a marker is left in {name}"
        assert dciodvfy_errors(tmp_path / name) == []
    write_report(result, tmp_path / "report.html", deidentify=True)
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert MARKER not in report and MARKED_UID_ROOT not in report and "18880808" not in report

    pm, sc = written["pm.dcm"], written["sc.dcm"]
    assert pm.StudyInstanceUID == sc.StudyInstanceUID == pseudonymous_uid(header.StudyInstanceUID)
    assert pm.PatientID == sc.PatientID == pseudonymous_patient_id(header.PatientID)
    for dataset in (pm, sc):
        reference = source_reference(dataset)
        assert reference.ReferencedSOPInstanceUID == pseudonymous_uid(header.SOPInstanceUID)
        assert reference.ReferencedSOPClassUID == header.SOPClassUID, "a standard UID is no one's"
        assert dataset.PatientIdentityRemoved == "YES" and str(dataset.PatientName) == ""
        assert "AI explanation" in dataset.SeriesDescription, "our own descriptions stay"
    if "FrameOfReferenceUID" in header:
        assert pm.FrameOfReferenceUID == pseudonymous_uid(header.FrameOfReferenceUID)
    if frame:
        assert source_reference(pm).ReferencedFrameNumber == source_reference(sc).ReferencedFrameNumber == frame + 1


def test_the_header_highdicom_sees_holds_only_what_the_allow_list_names(tmp_path):
    header, planted, _ = hostile_source(tmp_path, "ct slice")
    source = deidentified_source(header)
    assert {element.keyword for element in source} <= set(FROM_SOURCE) | {"SpecificCharacterSet"}
    assert leaked_in(source, planted) == []
    assert "Laterality" not in source, "a coded value that is not a side is left out"


def test_a_de_identified_export_of_a_source_without_a_patient_id_invents_none(tmp_path):
    header = pydicom.dcmread(write_radiograph(tmp_path / "dx.dcm", rows=40, cols=30, extra={"PatientID": None}))
    dataset = write_parametric_map(explanation_of(header), tmp_path / "pm.dcm", deidentify=True)
    assert dataset.PatientID == "", "one pseudonym for every patient without an ID would join them"


# --- burned-in annotation


@pytest.mark.parametrize("value", ["YES", "yes", "Yes ", ["NO", "YES"]])
def test_burned_in_annotation_refuses_every_de_identified_export_and_no_identified_one(value, tmp_path):
    header = pydicom.dcmread(write_radiograph(tmp_path / "dx.dcm", rows=40, cols=30))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lower case and two values break the VR on purpose
        header.BurnedInAnnotation = value
    result = explanation_of(header)
    for name, write in {**WRITERS, "report.html": write_report}.items():
        with pytest.raises(ExportError, match="burned-in annotation") as refusal:
            write(result, tmp_path / name, deidentify=True)
        assert "\n" not in str(refusal.value)
        assert not (tmp_path / name).exists()
        write(result, tmp_path / name, deidentify=False)
        assert (tmp_path / name).exists(), "the reader's own, identified copy is still written"


def test_the_command_line_png_is_refused_for_burned_in_annotation_when_de_identifying(tmp_path):
    from cli.explain_outputs import OutputError, write_png

    header = pydicom.dcmread(write_radiograph(tmp_path / "dx.dcm", rows=40, cols=30,
                                              extra={"BurnedInAnnotation": "YES"}))
    explained = SimpleNamespace(frame=SimpleNamespace(header=header))  # refused before anything else is read
    with pytest.raises(OutputError, match="burned-in annotation") as refusal:
        write_png(tmp_path / "overlay.png", explained, True)
    assert "\n" not in str(refusal.value) and not (tmp_path / "overlay.png").exists()


# --- sequences nested beyond any real header


def deeply_nested_source(folder: Path, depth: int) -> Dataset:
    """A radiograph with a Patient module sequence and an image one nested ``depth`` deep, fully decoded.

    pydicom decodes nested items only when they are read; a viewer or ``info`` that walked the
    header has done so, and that is the header an export gets.
    """
    path = write_radiograph(folder / "dx.dcm", rows=40, cols=30)
    dataset = pydicom.dcmread(path)
    dataset.OtherPatientIDsSequence = nested_sequence(depth)
    dataset.ReferencedImageSequence = nested_sequence(depth)
    dataset.save_as(folder / "deep.dcm")
    header = pydicom.dcmread(folder / "deep.dcm")
    for _ in header.iterall():
        pass
    return header


@pytest.mark.parametrize("deidentify", [False, True])
def test_a_sequence_nested_a_hundred_deep_is_left_out_of_every_export(deidentify, tmp_path):
    result = explanation_of(deeply_nested_source(tmp_path, 100))
    for name, write in WRITERS.items():
        dataset = write(result, tmp_path / name, deidentify=deidentify)
        assert dciodvfy_errors(tmp_path / name) == []
        assert "OtherPatientIDsSequence" not in dataset and "ReferencedImageSequence" not in dataset
    write_report(result, tmp_path / "report.html", deidentify=deidentify)


def test_an_identified_map_still_carries_a_sequence_nested_as_deep_as_real_headers_go(tmp_path):
    header = deeply_nested_source(tmp_path, MAX_NESTING - 1)
    dataset = write_parametric_map(explanation_of(header), tmp_path / "pm.dcm")
    assert dataset.OtherPatientIDsSequence == header.OtherPatientIDsSequence, "the Patient module is copied whole"
