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

``deidentify=True`` builds both objects from an allow-list of what they need of the source
(:mod:`exports.deidentify`): pseudonymous UIDs and Patient ID, empty Type 2 names and dates, a
few coded facts about the pixels, and geometry as numbers; nothing else of the source reaches
highdicom. Our own descriptions are kept, as the Clean Descriptors Option allows: we wrote them
and they hold no patient data. A source with burned-in annotation is refused: its pixels may
carry a name.

An identified export copies the source header, but no attribute whose sequences nest deeper
than :data:`MAX_NESTING`: no real header does, and copying one would exhaust the stack.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import highdicom as hd
import numpy as np
from PIL import ImageCms
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from dicom.image import FrameImage
from dicom.pixels import Voi
from dicom.series import frame_attribute, frame_count
from explain.method import Display
from explain.preprocessing import to_image_grid
from exports.deidentify import (
    deidentified_source,
    finite_numbers,
    has_burned_in_annotation,
    mark_deidentified,
    pseudonymous_patient_id,
    pseudonymous_uid,
)
from exports.errors import ExportError
from exports.heat_colours import blend, displayed, heat_levels, heat_table
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
#: Patient Orientation values we understand: one to three of the six direction letters.
ORIENTATION_VALUE = re.compile(r"[LRAPHF]{1,3}")
#: Deepest sequence nesting copied from a source into an identified export. Real headers nest a
#: few levels (functional groups, codes in codes); 100 levels exhaust ``copy.deepcopy``'s stack.
MAX_NESTING = 12
#: What the builders raise on a source they cannot use; each becomes one ExportError line.
BUILD_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError)

__all__ = ["ExportError", "ExportedExplanation", "explanation_to_export", "parametric_map", "pseudonymous_patient_id",
           "pseudonymous_uid", "secondary_capture", "write_parametric_map", "write_secondary_capture"]


@dataclass(frozen=True, eq=False)
class ExportedExplanation:
    """One finished explanation, ready to write: the map on the image's own pixels and its story.

    ``source`` is the explained image's header (pixel data not needed), ``frame_index`` its frame
    in a multi-frame file; ``shown`` is the image as the reader saw it (8-bit grey, or RGB);
    ``heatmap`` is float32 on the same grid, the raw values the Parametric Map stores.
    ``opacity``, ``threshold``, ``show`` and ``overlay_heatmap`` (the display copy of the map on
    the same grid, None to draw the raw map) are the overlay's, for the burned-in picture.
    ``figures`` are the trust figures (empty when none were run).
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
    show: str = "positive"
    overlay_heatmap: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.heatmap.shape != self.shown.shape[:2]:
            raise ExportError(f"the heatmap {self.heatmap.shape} is not on the image's grid {self.shown.shape[:2]}")

    @property
    def levels(self) -> tuple[float, float]:
        """The raw map's colour scale, as the Parametric Map's palette has it."""
        return heat_levels(self.heatmap)

    @property
    def overlay_heat(self) -> np.ndarray:
        """The map as the overlay draws it: the display copy, or the raw map when there is none."""
        return self.heatmap if self.overlay_heatmap is None else self.overlay_heatmap

    @property
    def overlay_levels(self) -> tuple[float, float]:
        """The burned-in picture's colour scale, as the colour bar on screen has it."""
        return heat_levels(self.overlay_heat, self.show)

    def overlay(self) -> np.ndarray:
        """The picture with the heat burned in: 8-bit RGB, as on screen."""
        return blend(self.shown, self.overlay_heat, self.overlay_levels, self.opacity, self.threshold, self.show)

    @property
    def scored_figures(self) -> dict[str, float]:
        """The trust figures with the score beside them, which some of their hints are judged against."""
        return {**self.figures, "score": self.score}

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
                                                       for name, value, _ in named_figures(self.scored_figures)) + ".")
        if self.verdict:
            parts.append(self.verdict)
        return " ".join(parts)


def explanation_to_export(image: FrameImage, heatmap: np.ndarray, *, method: str, model_name: str, target: str,
                          score: float, units: str = "", figures: Mapping[str, float] | None = None,
                          verdict: str = "", voi: Voi | None = None, invert: bool | None = None,
                          opacity: float = 0.6, threshold: float = 0.1,
                          display: Display | None = None) -> ExportedExplanation:
    """Describe an explanation of ``image`` for export; ``heatmap`` may be on the model's grid.

    ``voi`` and ``invert`` are what the reader had on screen (the file's default otherwise), and
    so is ``display``, made on the grid ``heatmap`` is given on, as the view smooths it; without
    one the overlay draws the raw map's positive part.
    """
    rows, columns = image.stored.shape[:2]
    overlay = None if display is None else on_image_grid(displayed(heatmap, display), (rows, columns))
    voi = voi if voi is not None else image.default_voi()
    shown = image.render(voi, image.inverted_by_default if invert is None else invert)
    return ExportedExplanation(image.frame.header, image.frame.index, shown, on_image_grid(heatmap, (rows, columns)),
                               method, model_name, target, float(score), units, dict(figures or {}), verdict, opacity,
                               threshold, "positive" if display is None else display.show, overlay)


def on_image_grid(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map as float32 on the image's ``(rows, columns)``, resized there when it is on the model's grid."""
    heat = np.asarray(heatmap, dtype=np.float32)
    return heat if heat.shape == shape else to_image_grid(heat, shape)


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
    # One window, given as lists: highdicom splits a plain explanation string into letters.
    window = hd.VOILUTTransformation(window_center=[(low + high) / 2], window_width=[high - low],
                                     window_explanation=["HEAT"], voi_lut_function="LINEAR_EXACT")
    try:
        pm = hd.pm.ParametricMap(
            [_with_geometry(source, result.source, result.frame_index)], heat, generate_uid(), PARAMETRIC_MAP_SERIES,
            generate_uid(), 1, MANUFACTURER, MANUFACTURER, _version(), _version(), False, [mapping],
            voi_lut_transformations=[window], content_label="AI_HEATMAP", content_description=result.headline())
    except BUILD_ERRORS as error:
        raise ExportError(f"cannot build a Parametric Map from this image: {_one_line(error)}") from None
    if frame_count(result.source) > 1:  # highdicom saw a one-frame copy: point at the frame explained
        for derivation in pm.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence:
            for item in derivation.SourceImageSequence:
                item.ReferencedFrameNumber = result.frame_index + 1
    _add_palette(pm, low, high)
    _finish(pm, result, source, deidentify)
    return pm


def secondary_capture(result: ExportedExplanation, deidentify: bool = False) -> Dataset:
    """The picture with the heat burned in, for PACS that show nothing else, labelled as such."""
    source = _source(result, deidentify)
    spacing = _numbers(result.source.get("PixelSpacing"), 2)
    try:
        sc = hd.sc.SCImage.from_ref_dataset(
            source, result.overlay(), "RGB", 8, "PATIENT", generate_uid(), SECONDARY_CAPTURE_SERIES, generate_uid(), 1,
            MANUFACTURER, patient_orientation=("L", "F"), pixel_spacing=tuple(spacing) if spacing else None)
    except BUILD_ERRORS as error:
        raise ExportError(f"cannot build a Secondary Capture from this image: {_one_line(error)}") from None
    # highdicom only takes single letters; the source's own values (or none) are what is true.
    sc.PatientOrientation = _patient_orientation(result.source, result.frame_index) or ""
    sc.BurnedInAnnotation = "YES" if has_burned_in_annotation(result.source) else "NO"
    sc.SourceImageSequence = [_source_reference(source, result.frame_index, frame_count(result.source))]
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
        raise ExportError(f"cannot write {path}: {_one_line(error)}") from None
    return dataset


def _one_line(error: Exception) -> str:
    """The first line of an error's text, for the status bar."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# --- from the source


def _source(result: ExportedExplanation, deidentify: bool) -> Dataset:
    """What highdicom may read of the source: the allow-list when de-identifying, else a bounded copy.

    Either way the Type 2 attributes highdicom reads are present (empty when the source has none).
    """
    header = result.source
    for keyword in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not header.get(keyword):
            raise ExportError(f"the source image has no {keyword}")
    source = deidentified_source(header) if deidentify else bounded_copy(header)
    for keyword in COPIED_EMPTY_WHEN_MISSING:
        if keyword not in source:
            setattr(source, keyword, "")
    return source


def bounded_copy(header: Dataset, max_nesting: int = MAX_NESTING) -> Dataset:
    """A copy of ``header`` without any attribute whose sequences nest deeper than ``max_nesting``.

    Such an attribute is left out whole (half a sequence would say something false); everything
    else is copied as it is, so an identified export carries what it always did.
    """
    copied = Dataset()
    for element in header:
        if _nesting(element, max_nesting) <= max_nesting:
            copied.add(copy.deepcopy(element))
    return copied


def _nesting(element: DataElement, limit: int) -> int:
    """How many sequences deep ``element`` goes (0 for a plain value), counted without recursion.

    Counting stops once ``limit`` is passed: that is all the caller needs to know.
    """
    deepest = 0
    pending = [(element, 1)]
    while pending:
        current, depth = pending.pop()
        if current.VR != "SQ":
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        pending.extend((child, depth + 1) for item in current.value for child in item)
    return deepest


def _numbers(value: object, count: int) -> list[float] | None:
    """Exactly ``count`` finite numbers, or None: geometry from a source is only ever numbers."""
    numbers = finite_numbers(value) if value is not None else None
    return numbers if numbers is not None and len(numbers) == count else None


def _patient_orientation(header: Dataset, frame: int) -> list[str] | None:
    """Row and column directions as Patient Orientation letters: the file's own, else from its cosines.

    The file's own are used only when they are direction letters: a coded string can hold a name.
    """
    given = header.get("PatientOrientation")
    if given and len(given) == 2 and all(ORIENTATION_VALUE.fullmatch(str(v)) for v in given):
        return [str(v) for v in given]
    value = _numbers(frame_attribute(header, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    if value is None:
        return None
    letters = []
    for axis in (np.asarray(value[:3]), np.asarray(value[3:])):
        ranked = sorted(((abs(c), i) for i, c in enumerate(axis)), reverse=True)
        letters.append("".join("LPH"[i] if axis[i] > 0 else "RAF"[i] for size, i in ranked if size > 1e-3)[:3])
    return letters


def _cosines(header: Dataset, frame: int) -> list[float]:
    """Direction cosines of rows and columns: the file's, else from Patient Orientation letters."""
    value = _numbers(frame_attribute(header, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    if value is not None:
        return value
    directions = []
    for letters in _patient_orientation(header, frame) or ["L", "P"]:
        vector = np.sum([ORIENTATION_LETTERS[c] for c in str(letters) if c in ORIENTATION_LETTERS] or [(0, 0, 0)],
                        axis=0).astype(float)
        directions.append(vector / np.linalg.norm(vector) if vector.any() else None)
    if directions[0] is None or directions[1] is None or abs(float(np.dot(*directions))) > 1e-6:
        directions = [np.array([1.0, 0, 0]), np.array([0, 1.0, 0])]
    return [float(v) for v in np.concatenate(directions)]


def _with_geometry(source: Dataset, header: Dataset, frame: int) -> Dataset:
    """``source`` as highdicom needs it: one frame with a frame of reference, position, spacing.

    The geometry is read from ``header``, the whole source, for the frame explained, as numbers.
    A CT or MR slice has all of it already. A projection radiograph has none: it gets a new
    frame of reference, its own spacing (Imager Pixel Spacing when Pixel Spacing is absent) and
    its orientation letters as cosines at a nominal origin. A frame of a multi-frame file is
    described as a file of that one frame, with functional groups holding only its geometry.
    """
    geometry = bounded_copy(source)
    cosines = _cosines(header, frame)
    position = _numbers(frame_attribute(header, frame, "PlanePositionSequence", "ImagePositionPatient"), 3)
    spacing = (_numbers(frame_attribute(header, frame, "PixelMeasuresSequence", "PixelSpacing"), 2)
               or _numbers(header.get("ImagerPixelSpacing"), 2) or [1.0, 1.0])
    thickness = _numbers(frame_attribute(header, frame, "PixelMeasuresSequence", "SliceThickness"), 1) or [1.0]
    geometry.ImageOrientationPatient = cosines
    geometry.ImagePositionPatient = position or [0.0, 0.0, 0.0]
    geometry.PixelSpacing = spacing
    geometry.SliceThickness = thickness[0]
    if not geometry.get("FrameOfReferenceUID"):
        geometry.FrameOfReferenceUID = generate_uid()
        geometry.PositionReferenceIndicator = ""
    if frame_count(header) > 1 or "SharedFunctionalGroupsSequence" in header:
        geometry.NumberOfFrames = 1
        geometry.SharedFunctionalGroupsSequence = [_shared_geometry(geometry)]
        geometry.PerFrameFunctionalGroupsSequence = [_frame_position(geometry)]
    return geometry


def _shared_geometry(geometry: Dataset) -> Dataset:
    """A Shared Functional Groups item with only the orientation and pixel measures of ``geometry``."""
    orientation, measures, group = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = geometry.ImageOrientationPatient
    measures.PixelSpacing = geometry.PixelSpacing
    measures.SliceThickness = geometry.SliceThickness
    group.PlaneOrientationSequence = [orientation]
    group.PixelMeasuresSequence = [measures]
    return group


def _frame_position(geometry: Dataset) -> Dataset:
    """A Per-Frame Functional Groups item with only the position of ``geometry``."""
    position, group = Dataset(), Dataset()
    position.ImagePositionPatient = geometry.ImagePositionPatient
    group.PlanePositionSequence = [position]
    return group


def _source_reference(source: Dataset, frame: int, frames: int) -> Dataset:
    """A Source Image Sequence item pointing at the explained image (and frame, of ``frames``)."""
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frames > 1:
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
    """Labels that say what this is, laterality, and the record of de-identification when asked."""
    dataset.Laterality = _laterality(source)
    if deidentify:
        mark_deidentified(dataset)
    dataset.SeriesDescription = result.headline()
    dataset.ImageComments = result.statement()[:10240]
    dataset.DerivationDescription = f"Heatmap of an AI explanation ({result.method}) of {result.model_name}"[:1024]
