"""An explanation as DICOM for a PACS: a Parametric Map of the heat, a Secondary Capture of the overlay.

No Qt here: File > Export in the viewer and ``--out`` on the command line call the same three
functions, on one frozen description of what was explained::

    from exports.dicom_objects import ExportError, explanation_to_export, write_parametric_map, \
        write_secondary_capture

    result = explanation_to_export(image, update.heatmap, method="Occlusion", model_name=card.name,
                                   target="effusion", score=0.97, units="drop in probability",
                                   figures=trust_figures, verdict=sentence)
    write_parametric_map(result, "heat.dcm", deidentify=False)     # float heat, palette, values
    write_secondary_capture(result, "overlay.dcm", deidentify=True)  # RGB, heat burned in

``image`` is the :class:`~dicom.image.FrameImage` that was explained and
``update.heatmap`` the final map on the model's grid; it is put back on the image's own pixels
here. Anything that stops an export raises :class:`ExportError` with a one-line reason.

Both objects join the source's study as a new series (fresh UIDs), copy the patient and study
identifiers from the source (never made up: a missing one stays empty) and reference the source
image's SOP instance, so a PACS files them with it. A projection radiograph has no frame of
reference, which a Parametric Map must have: it gets a new one, with the image's own pixel
spacing and its Patient Orientation turned into direction cosines, at a nominal origin.

``deidentify=True`` applies what the PS3.15 Basic Application Level Confidentiality Profile asks
of the attributes these objects carry (names, IDs, dates, institutions, free text, private
tags), replaces every non-standard UID by one derived from it with a secret of this process (so
the exports of one session stay together) and records it in the object. Our own descriptions
are kept, as the Clean Descriptors Option allows: we wrote them and they hold no patient data.
A source with burned-in annotation is refused: its pixels may carry a name.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import highdicom as hd
import numpy as np
from PIL import ImageCms
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID, generate_uid

from dicom.image import FrameImage
from dicom.pixels import Voi
from dicom.series import frame_attribute, frame_count
from explain.preprocessing import to_image_grid
from exports.heat_colours import blend, heat_levels, heat_table
from exports.trust_text import named_figures

MANUFACTURER = "Lightbox"
#: Series numbers of the two derived series, out of the way of an acquisition's own numbers.
PARAMETRIC_MAP_SERIES = 9101
SECONDARY_CAPTURE_SERIES = 9102
#: Direction cosines of each Patient Orientation letter (PS3.3 C.7.6.1.1.1), patient-based LPS.
ORIENTATION_LETTERS = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "H": (0, 0, 1),
                       "F": (0, 0, -1)}
#: Type 2 attributes highdicom reads from the source; a missing one is written empty, not invented.
COPIED_EMPTY_WHEN_MISSING = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                             "AccessionNumber", "StudyID", "ReferringPhysicianName")
#: PS3.15 Table E.1-1, basic profile, for what these objects can hold: emptied (Z) where the
#: attribute is Type 2, removed (X) elsewhere. Person names anywhere are emptied too; the Patient
#: ID becomes a session pseudonym (a dummy value, which "Z" allows).
EMPTIED = frozenset({"PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                     "AccessionNumber", "StudyID", "ReferringPhysicianName", "ContentCreatorName"})
REMOVED = frozenset({
    "PatientAge", "PatientSize", "PatientWeight", "PatientAddress", "PatientBirthTime", "PatientBirthName",
    "PatientMotherBirthName", "PatientTelephoneNumbers", "PatientComments", "PatientState", "OtherPatientIDs",
    "OtherPatientIDsSequence", "OtherPatientNames", "IssuerOfPatientID", "MedicalRecordLocator", "EthnicGroup",
    "Occupation", "AdditionalPatientHistory", "PregnancyStatus", "SmokingStatus", "MilitaryRank", "BranchOfService",
    "CountryOfResidence", "RegionOfResidence", "ResponsiblePerson", "ResponsibleOrganization",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName", "OperatorsName",
    "PerformingPhysicianName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "RequestingPhysician",
    "StudyDescription", "SeriesDescription", "ImageComments", "DerivationDescription", "ProtocolName",
    "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime",
    "InstanceCreationDate", "InstanceCreationTime", "AdmittingDiagnosesDescription", "ReasonForStudy",
    "RequestAttributesSequence", "ReferencedPatientSequence", "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence", "PerformedProcedureStepID", "PerformedProcedureStepDescription",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "ScheduledProcedureStepID",
    "RequestedProcedureID", "RequestedProcedureDescription", "DeviceSerialNumberOfSource",
})
#: Type 1 dates of ours that the profile replaces by a dummy (its "D" action).
DUMMY_DATES = {"ContentDate": "19000101", "ContentTime": "000000"}
#: Coded record of what was done (PS3.16 CID 7050).
DEIDENTIFICATION_CODES = (("113100", "Basic Application Confidentiality Profile"), ("113105", "Clean Descriptors Option"))
#: A per-process secret: UIDs map the same way within one session, and cannot be traced back.
UID_SECRET = secrets.token_hex(16)


class ExportError(Exception):
    """Anything that stops an export; its text is one line for the status bar or stderr."""


@dataclass(frozen=True, eq=False)
class ExportedExplanation:
    """One finished explanation, ready to write: the map on the image's own pixels and its story.

    ``source`` is the explained image's header (pixel data not needed), ``frame_index`` its frame
    in a multi-frame file; ``shown`` is the image as the reader saw it (8-bit grey, or RGB);
    ``heatmap`` is float32 on the same grid. ``opacity`` and ``threshold`` are the overlay's,
    for the burned-in picture. ``figures`` are the trust figures (empty when none were run).
    """

    source: Dataset
    frame_index: int
    shown: np.ndarray
    heatmap: np.ndarray
    method: str
    model_name: str
    target: str
    score: float
    units: str = ""
    figures: Mapping[str, float] = field(default_factory=dict)
    verdict: str = ""
    opacity: float = 0.6
    threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.heatmap.shape != self.shown.shape[:2]:
            raise ExportError(f"the heatmap {self.heatmap.shape} is not on the image's grid {self.shown.shape[:2]}")

    @property
    def levels(self) -> tuple[float, float]:
        return heat_levels(self.heatmap)

    def overlay(self) -> np.ndarray:
        """The picture with the heat burned in: 8-bit RGB, as on screen."""
        return blend(self.shown, self.heatmap, self.levels, self.opacity, self.threshold)

    def headline(self) -> str:
        """``AI explanation: Occlusion, effusion 0.97``, short enough for a Series Description."""
        return f"AI explanation: {self.method}, {self.target} {self.score:.2f}"[:64]

    def statement(self) -> str:
        """What the object is, in full: method, model, target, score, trust figures, verdict."""
        parts = [f"Derived from an AI explanation, not an acquired image. Method: {self.method}. "
                 f"Model: {self.model_name}. Target: {self.target}, probability {self.score:.3f}."]
        if self.units:
            parts.append(f"Heat measures: {self.units}.")
        if self.figures:
            parts.append("Trust figures: " + ", ".join(f"{name} {value:.3f}"
                                                       for name, value, _ in named_figures(self.figures)) + ".")
        if self.verdict:
            parts.append(self.verdict)
        return " ".join(parts)


def explanation_to_export(image: FrameImage, heatmap: np.ndarray, *, method: str, model_name: str, target: str,
                          score: float, units: str = "", figures: Mapping[str, float] | None = None,
                          verdict: str = "", voi: Voi | None = None, invert: bool | None = None,
                          opacity: float = 0.6, threshold: float = 0.1) -> ExportedExplanation:
    """Describe an explanation of ``image`` for export; ``heatmap`` may be on the model's grid.

    ``voi`` and ``invert`` are what the reader had on screen (the file's default otherwise).
    """
    rows, columns = image.stored.shape[:2]
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != (rows, columns):
        heat = to_image_grid(heat, (rows, columns))
    voi = voi if voi is not None else image.default_voi()
    shown = image.render(voi, image.inverted_by_default if invert is None else invert)
    return ExportedExplanation(image.frame.header, image.frame.index, shown, heat, method, model_name, target,
                               float(score), units, dict(figures or {}), verdict, opacity, threshold)


# --- the two objects


def parametric_map(result: ExportedExplanation, deidentify: bool = False) -> Dataset:
    """The heat as a Parametric Map: float32 values, their meaning, and the overlay's colours.

    Float pixels carry the map exactly; the Real World Value Mapping says what they measure;
    the palette (Pixel Presentation COLOR_RANGE with a Stored Value Color Range from zero to the
    map's top, as on screen) lets a PACS show it in the viewer's colours. highdicom builds the
    object and refuses palettes on float pixels, so the palette is added afterwards.
    """
    source = _source(result, deidentify)
    heat = np.nan_to_num(result.heatmap, nan=0.0).astype(np.float32)
    low, high = result.levels
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="HEAT", lut_explanation=(result.units or result.method)[:64], unit=codes.UCUM.NoUnits,
        value_range=(float(heat.min()), float(heat.max())), slope=1.0, intercept=0.0)
    window = hd.VOILUTTransformation(window_center=(low + high) / 2, window_width=high - low,
                                     window_explanation="HEAT", voi_lut_function="LINEAR_EXACT")
    try:
        pm = hd.pm.ParametricMap(
            [_with_geometry(source, result.frame_index)], heat, generate_uid(), PARAMETRIC_MAP_SERIES, generate_uid(), 1,
            MANUFACTURER, MANUFACTURER, _version(), _version(), False, [mapping], voi_lut_transformations=[window],
            content_label="AI_HEATMAP", content_description=result.headline())
    except (ValueError, TypeError, AttributeError) as error:
        raise ExportError(f"cannot build a Parametric Map from this image: {error}") from None
    if frame_count(source) > 1:  # highdicom saw a one-frame copy: point at the frame explained
        for derivation in pm.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence:
            for item in derivation.SourceImageSequence:
                item.ReferencedFrameNumber = result.frame_index + 1
    _add_palette(pm, low, high)
    _finish(pm, result, source, deidentify)
    return pm


def secondary_capture(result: ExportedExplanation, deidentify: bool = False) -> Dataset:
    """The picture with the heat burned in, for PACS that show nothing else, labelled as such."""
    source = _source(result, deidentify)
    spacing = source.get("PixelSpacing")
    try:
        sc = hd.sc.SCImage.from_ref_dataset(
            source, result.overlay(), "RGB", 8, "PATIENT", generate_uid(), SECONDARY_CAPTURE_SERIES, generate_uid(), 1,
            MANUFACTURER, patient_orientation=("L", "F"),
            pixel_spacing=tuple(float(v) for v in spacing) if spacing else None)
    except (ValueError, TypeError, AttributeError) as error:
        raise ExportError(f"cannot build a Secondary Capture from this image: {error}") from None
    # highdicom only takes single letters; the source's own values (or none) are what is true.
    sc.PatientOrientation = _patient_orientation(source, result.frame_index) or ""
    sc.BurnedInAnnotation = "YES" if source.get("BurnedInAnnotation") == "YES" else "NO"
    sc.SourceImageSequence = [_source_reference(source, result.frame_index)]
    _finish(sc, result, source, deidentify)
    return sc


def write_parametric_map(result: ExportedExplanation, path: str | Path, deidentify: bool = False) -> Dataset:
    """Build and write the Parametric Map; returns what was written."""
    return _write(parametric_map(result, deidentify), path)


def write_secondary_capture(result: ExportedExplanation, path: str | Path, deidentify: bool = False) -> Dataset:
    """Build and write the Secondary Capture; returns what was written."""
    return _write(secondary_capture(result, deidentify), path)


def _write(dataset: Dataset, path: str | Path) -> Dataset:
    try:
        dataset.save_as(Path(path), enforce_file_format=True)
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error.strerror or error}") from None
    except (ValueError, TypeError) as error:  # a value pydicom cannot encode
        raise ExportError(f"cannot write {path}: {str(error).splitlines()[0]}") from None
    return dataset


# --- from the source


def _source(result: ExportedExplanation, deidentify: bool) -> Dataset:
    """A copy of the source header with what highdicom reads present (missing Type 2 ones empty)."""
    header = result.source
    for keyword in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not header.get(keyword):
            raise ExportError(f"the source image has no {keyword}")
    if deidentify and header.get("BurnedInAnnotation") == "YES":
        raise ExportError("the source image has burned-in annotation, which cannot be de-identified")
    source = copy.deepcopy(header)
    for keyword in COPIED_EMPTY_WHEN_MISSING:
        if keyword not in source:
            setattr(source, keyword, "")
    return source


def _patient_orientation(source: Dataset, frame: int) -> list[str] | None:
    """Row and column directions as Patient Orientation letters: the file's own, else from its cosines."""
    value = frame_attribute(source, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    given = source.get("PatientOrientation")
    if given and len(given) == 2 and all(str(v) for v in given):
        return [str(v) for v in given]
    if value is None or len(value) != 6:
        return None
    letters = []
    for axis in (np.asarray(value[:3], dtype=float), np.asarray(value[3:], dtype=float)):
        ranked = sorted(((abs(c), i) for i, c in enumerate(axis)), reverse=True)
        letters.append("".join("LPH"[i] if axis[i] > 0 else "RAF"[i] for size, i in ranked if size > 1e-3)[:3])
    return letters


def _cosines(source: Dataset, frame: int) -> list[float]:
    """Direction cosines of rows and columns: the file's, else from Patient Orientation letters."""
    value = frame_attribute(source, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    if value is not None and len(value) == 6:
        return [float(v) for v in value]
    directions = []
    for letters in _patient_orientation(source, frame) or ["L", "P"]:
        vector = np.sum([ORIENTATION_LETTERS[c] for c in str(letters) if c in ORIENTATION_LETTERS] or [(0, 0, 0)],
                        axis=0).astype(float)
        directions.append(vector / np.linalg.norm(vector) if vector.any() else None)
    if directions[0] is None or directions[1] is None or abs(float(np.dot(*directions))) > 1e-6:
        directions = [np.array([1.0, 0, 0]), np.array([0, 1.0, 0])]
    return [float(v) for v in np.concatenate(directions)]


def _with_geometry(source: Dataset, frame: int) -> Dataset:
    """The source as highdicom needs it: one frame with a frame of reference, position, spacing.

    A CT or MR slice has all of this already. A projection radiograph has none: it gets a new
    frame of reference, its own spacing (Imager Pixel Spacing when Pixel Spacing is absent) and
    its orientation letters as cosines at a nominal origin. A frame of a multi-frame file gets
    that frame's geometry from its functional groups.
    """
    geometry = copy.deepcopy(source)
    spacing = frame_attribute(source, frame, "PixelMeasuresSequence", "PixelSpacing") or source.get(
        "ImagerPixelSpacing") or [1.0, 1.0]
    thickness = frame_attribute(source, frame, "PixelMeasuresSequence", "SliceThickness") or 1.0
    position = frame_attribute(source, frame, "PlanePositionSequence", "ImagePositionPatient")
    geometry.ImageOrientationPatient = _cosines(source, frame)
    geometry.ImagePositionPatient = [float(v) for v in position] if position else [0.0, 0.0, 0.0]
    geometry.PixelSpacing = [float(v) for v in spacing]
    geometry.SliceThickness = float(thickness)
    if not geometry.get("FrameOfReferenceUID"):
        geometry.FrameOfReferenceUID = generate_uid()
        geometry.PositionReferenceIndicator = ""
    if frame_count(source) > 1:
        geometry.NumberOfFrames = 1
        if "PerFrameFunctionalGroupsSequence" in source:
            geometry.PerFrameFunctionalGroupsSequence = [geometry.PerFrameFunctionalGroupsSequence[frame]]
    return geometry


def _source_reference(source: Dataset, frame: int) -> Dataset:
    """A Source Image Sequence item pointing at the explained image (and frame)."""
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame_count(source) > 1:
        item.ReferencedFrameNumber = frame + 1
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator = "121322", "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    item.PurposeOfReferenceCodeSequence = [purpose]
    return item


def _laterality(source: Dataset) -> str:
    """The series' Laterality: the source's when it names a side, otherwise empty (unknown)."""
    for keyword in ("Laterality", "ImageLaterality", "FrameLaterality"):
        if source.get(keyword) in ("R", "L"):
            return str(source.get(keyword))
    return ""


def _version() -> str:
    try:
        return metadata.version("lightbox")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- what both objects get


def _add_palette(pm: Dataset, low: float, high: float) -> None:
    """The overlay's colour map as the map's palette, spread over ``[low, high]`` as on screen."""
    table = heat_table().astype(np.uint16) * 257  # 16 bits per entry, as COLOR_RANGE requires
    luts = (hd.PaletteColorLUT(0, table[:, i], colour) for i, colour in enumerate(("red", "green", "blue")))
    for element in hd.PaletteColorLUTTransformation(*luts):
        if element.keyword.endswith("Descriptor"):
            element.VR = "US"
        pm.add(element)
    pm.PixelPresentation = "COLOR_RANGE"
    pm.ICCProfile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    colour_range = Dataset()
    colour_range.MinimumStoredValueMapped = float(low)
    colour_range.MaximumStoredValueMapped = float(high)
    pm.SharedFunctionalGroupsSequence[0].StoredValueColorRangeSequence = [colour_range]


def _finish(dataset: Dataset, result: ExportedExplanation, source: Dataset, deidentify: bool) -> None:
    """Labels that say what this is, laterality, and de-identification when asked."""
    dataset.Laterality = _laterality(source)
    if deidentify:
        deidentify_dataset(dataset)
    dataset.SeriesDescription = result.headline()
    dataset.ImageComments = result.statement()[:10240]
    dataset.DerivationDescription = f"Heatmap of an AI explanation ({result.method}) of {result.model_name}"[:1024]


def pseudonymous_uid(uid: str) -> UID:
    """A new UID for ``uid``: the same within this process, unrelatable to it outside."""
    return generate_uid(entropy_srcs=[UID_SECRET, str(uid)])


def pseudonymous_patient_id(patient_id: str) -> str:
    """A dummy Patient ID (the profile's "Z" allows one) that keeps one patient's exports together."""
    return "LB-" + pseudonymous_uid(f"patient:{patient_id}").split(".")[-1][-12:]


def deidentify_dataset(dataset: Dataset) -> None:
    """Apply the basic profile in place (see the module's docstring) and record that it was."""
    def clean(ds: Dataset) -> None:
        ds.remove_private_tags()
        for element in list(ds):
            keyword = element.keyword
            if element.tag.group & 0xFF00 == 0x6000 or keyword in REMOVED:
                del ds[element.tag]
            elif keyword == "PatientID":
                element.value = pseudonymous_patient_id(element.value)
            elif keyword in EMPTIED or element.VR == "PN":
                element.value = ""
            elif keyword in DUMMY_DATES:
                element.value = DUMMY_DATES[keyword]
            elif element.VR == "UI" and element.value and UID(str(element.value)).name == str(element.value):
                element.value = pseudonymous_uid(element.value)
            elif element.VR == "SQ":
                for item in element.value:
                    clean(item)

    clean(dataset)
    if hasattr(dataset, "file_meta") and "MediaStorageSOPInstanceUID" in dataset.file_meta:
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.PatientIdentityRemoved = "YES"
    dataset.LongitudinalTemporalInformationModified = "REMOVED"
    dataset.DeidentificationMethod = "PS3.15 Basic Profile, Clean Descriptors (Lightbox)"
    items = []
    for value, meaning in DEIDENTIFICATION_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    dataset.DeidentificationMethodCodeSequence = items

