"""Synthetic DICOM files for tests, written with pydicom.

Tests need DICOM files whose every tag and pixel is known, so that a failure points at the code
under test and not at a mystery file. Each writer here takes the output path (or folder) and
keyword options, writes valid Part-10 files (preamble, file meta, Explicit VR Little Endian
unless asked otherwise) and returns the path(s) it wrote. Pixel content comes from a seeded
``numpy`` generator, so the same call always writes the same pixels; callers may pass their own
array instead.

The writers, from general to specific:

- :func:`write_image` -- one frame of any grayscale or RGB data, with every display tag the
  viewer reads (rescale, windows, VOI and modality LUTs, spacing, geometry).
- :func:`write_ct_series` -- a stack of CT slices whose file names are shuffled.
- :func:`write_multiframe` -- many frames in one file, plain or with functional groups.
- :func:`write_radiograph` -- a DX/CR projection image, MONOCHROME1 or MONOCHROME2.
- :func:`write_junk`, :func:`write_truncated`, :func:`write_non_image` -- the bad inputs a
  viewer must refuse with a clear error.

Any tag can be changed or removed afterwards through ``extra``: ``extra={"PatientName":
"Doe^Jane", "WindowCenter": None}`` sets the first and deletes the second.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    BasicTextSRStorage,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    MRImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import DSfloat

__all__ = [
    "sample_pixels",
    "write_image",
    "write_ct_series",
    "ct_phantom_slice",
    "write_multiframe",
    "write_radiograph",
    "write_junk",
    "write_truncated",
    "write_non_image",
    "write_dicomdir",
    "write_false_claim",
    "write_float_image",
    "write_deflate_bomb",
    "write_unconvertible_value",
    "nested_sequence",
    "write_nested_sequences",
    "write_rle_overrun",
]

PathLike = str | os.PathLike[str]
Window = tuple[float, float] | tuple[float, float, str]
"""A window as ``(center, width)`` or ``(center, width, explanation)``."""
Lut = tuple[int, int, "np.ndarray | Sequence[int]"]
"""A lookup table as ``(first_mapped, bits_per_entry, data)``, the LUT Descriptor's order."""
Vector3 = Sequence[float]

#: Image storage classes for the modalities that have a plain single-frame IOD; others are
#: written as Secondary Capture, which accepts any modality.
SOP_CLASS_BY_MODALITY: dict[str, str] = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
}

#: Row and column direction cosines of an axial slice: rows run to the patient's left (+x),
#: columns to the posterior (+y), so the slice normal points to the head (+z).
AXIAL: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

_STUDY_DATE = "20240315"  # fixed, so that two runs write identical headers but for the UIDs
_STUDY_TIME = "093000"
_SUPPORTED_DTYPES = {np.dtype(t) for t in ("uint8", "int8", "uint16", "int16")}


# --------------------------------------------------------------------------------------------
# Pixel content
# --------------------------------------------------------------------------------------------


def sample_pixels(
    rows: int = 64,
    cols: int = 64,
    *,
    dtype: str | np.dtype = "uint16",
    bits_stored: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Return a deterministic grayscale image that uses most of the stored range.

    A diagonal ramp with a bright disc and seeded noise: asymmetric, so that a flipped or
    transposed display is caught, and never constant, so that windows and ranges are defined.

    Parameters
    ----------
    rows, cols
        The image size.
    dtype
        One of uint8, int8, uint16, int16.
    bits_stored
        Values stay within this many bits (default: the whole dtype).
    seed
        Seed of the noise.
    """
    dtype = np.dtype(dtype)
    low, high = _stored_range(dtype, bits_stored or dtype.itemsize * 8)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    ramp = (2 * x + y) / max(2 * cols + rows - 3, 1)
    disc = ((y - rows * 0.3) ** 2 + (x - cols * 0.7) ** 2) < (min(rows, cols) * 0.15) ** 2
    noise = np.random.default_rng(seed).normal(0.0, 0.02, (rows, cols))
    unit = np.clip(0.8 * ramp + 0.15 * disc + noise, 0.0, 1.0)
    return np.round(low + unit * (high - low)).astype(dtype)


def _stored_range(dtype: np.dtype, bits_stored: int) -> tuple[int, int]:
    """Return the smallest and largest value that ``bits_stored`` bits can hold."""
    if dtype.kind == "i":
        return -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    return 0, 2**bits_stored - 1


# --------------------------------------------------------------------------------------------
# Building blocks shared by the writers
# --------------------------------------------------------------------------------------------


def _new_dataset(
    sop_class_uid: str,
    *,
    modality: str,
    transfer_syntax: str,
    study_uid: str | None,
    series_uid: str | None,
    series_number: int | None,
    instance_number: int | None,
) -> Dataset:
    """Return a dataset with file meta and the patient, study, series and SOP common tags.

    Every file needs these, and a study or series is only one when its files share UIDs, so the
    caller may pass them in; otherwise fresh ones are generated.
    """
    sop_instance_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UID(sop_class_uid)
    ds.SOPInstanceUID = sop_instance_uid
    ds.PatientName = "Synthetic^Test"
    ds.PatientID = "LIGHTBOX-TEST"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.StudyDate = _STUDY_DATE
    ds.StudyTime = _STUDY_TIME
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Lightbox test study"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = 1 if series_number is None else series_number
    ds.Modality = modality
    ds.Manufacturer = "Lightbox test factory"
    ds.InstanceNumber = 1 if instance_number is None else instance_number
    return ds


def _set_pixels(
    ds: Dataset,
    pixels: np.ndarray,
    *,
    photometric: str,
    bits_stored: int | None,
    multiframe: bool = False,
) -> None:
    """Set the Image Pixel module from an array shaped (r, c), (r, c, 3), (n, r, c) or (n, r, c, 3).

    Written out by hand rather than with ``Dataset.set_pixel_data`` so that a single-frame
    multi-frame file keeps its NumberOfFrames and the SOP Instance UID is left alone.
    """
    arr = np.asarray(pixels)
    if arr.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"pixels must be uint8, int8, uint16 or int16, not {arr.dtype}")
    samples = 3 if photometric in ("RGB", "YBR_FULL") else 1
    frame_ndim = 2 if samples == 1 else 3
    if arr.ndim != frame_ndim + multiframe or (samples == 3 and arr.shape[-1] != 3):
        kind = "multi-frame " if multiframe else ""
        raise ValueError(f"shape {arr.shape} does not fit {kind}{photometric} data")
    if samples == 3 and arr.dtype != np.uint8:
        raise TypeError("RGB pixels must be uint8")

    bits_allocated = arr.dtype.itemsize * 8
    bits_stored = bits_stored or bits_allocated
    low, high = _stored_range(arr.dtype, bits_stored)
    if arr.size and (arr.min() < low or arr.max() > high):
        raise ValueError(f"pixel values exceed {bits_stored} bits stored: {arr.min()}..{arr.max()}")

    rows, cols = arr.shape[multiframe : multiframe + 2]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0  # colour-by-pixel: R, G, B of one pixel, then the next
    if multiframe:
        ds.NumberOfFrames = arr.shape[0]
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(arr.dtype.kind == "i")

    big_endian = ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    byte_order = ">" if big_endian else "<"
    ds.PixelData = arr.astype(arr.dtype.newbyteorder(byte_order)).tobytes()
    ds["PixelData"].VR = "OW" if bits_allocated > 8 else "OB"


def _ds(value: float) -> DSfloat:
    """Return ``value`` as a Decimal String that fits the standard's 16 characters."""
    return DSfloat(value, auto_format=True)


def _ds_values(values: Sequence[float]) -> DSfloat | list[DSfloat]:
    """Return one DS for one value and a list for several, as a multi-valued tag is stored."""
    formatted = [_ds(v) for v in values]
    return formatted[0] if len(formatted) == 1 else formatted


def _set_windows(ds: Dataset, windows: Sequence[Window]) -> None:
    """Set WindowCenter/WindowWidth, multi-valued when there are several windows.

    Explanations are written only when at least one window has one; the others get an empty
    string so that the three tags keep the same number of values.
    """
    if not windows:
        return
    ds.WindowCenter = _ds_values([w[0] for w in windows])
    ds.WindowWidth = _ds_values([w[1] for w in windows])
    explanations = [str(w[2]) if len(w) > 2 else "" for w in windows]
    if any(explanations):
        ds.WindowCenterWidthExplanation = (
            explanations[0] if len(explanations) == 1 else explanations
        )


def _set_rescale(ds: Dataset, slope: float | None, intercept: float | None) -> None:
    """RescaleSlope/Intercept when either is given; the other takes its identity value."""
    if slope is not None or intercept is not None:
        ds.RescaleIntercept = _ds(0.0 if intercept is None else intercept)
        ds.RescaleSlope = _ds(1.0 if slope is None else slope)


def _lut_item(lut: Lut) -> Dataset:
    """Return a LUT sequence item with LUTDescriptor and LUTData.

    The descriptor's first value is the entry count, where 0 means 65536 (PS3.3 C.11.1.1.1).
    Its VR is SS only when the first mapped value is negative, as for signed pixel data.
    """
    first_mapped, bits, data = lut
    entries = np.asarray(data)
    count = 0 if len(entries) == 65536 else len(entries)
    item = Dataset()
    item.add_new("LUTDescriptor", "SS" if first_mapped < 0 else "US", [count, first_mapped, bits])
    item.add_new("LUTData", "US", [int(v) for v in entries])
    return item


def _set_geometry(
    ds: Dataset,
    *,
    pixel_spacing: float | Sequence[float] | None,
    imager_pixel_spacing: float | Sequence[float] | None,
    position: Vector3 | None,
    orientation: Sequence[float] | None,
) -> None:
    """Set spacing and patient-space geometry; a single number means square pixels."""
    if pixel_spacing is not None:
        ds.PixelSpacing = [_ds(v) for v in _pair(pixel_spacing)]
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = [_ds(v) for v in _pair(imager_pixel_spacing)]
    if position is not None:
        ds.ImagePositionPatient = [_ds(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [_ds(v) for v in orientation]


def _pair(spacing: float | Sequence[float]) -> list[float]:
    """Return ``[row_spacing, column_spacing]`` from one number or a pair."""
    if isinstance(spacing, (int, float)):
        return [float(spacing), float(spacing)]
    return [float(v) for v in spacing]


def _apply_extra(ds: Dataset, extra: Mapping[str, Any] | None) -> None:
    """Set each keyword in ``extra`` on ``ds``; a value of None deletes the element."""
    for keyword, value in (extra or {}).items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)


def _save(ds: Dataset, path: PathLike) -> Path:
    """Write ``ds`` as a Part-10 file, compressing first if the transfer syntax asks for it."""
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_compressed:
        # Dataset.compress starts from native pixel data, so encode from Explicit VR LE.
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(syntax, generate_instance_uid=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def write_image(
    path: PathLike,
    pixels: np.ndarray | None = None,
    *,
    modality: str = "OT",
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    windows: Sequence[Window] | None = None,
    voi_lut: Lut | None = None,
    modality_lut: Lut | None = None,
    pixel_spacing: float | Sequence[float] | None = None,
    imager_pixel_spacing: float | Sequence[float] | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int | None = None,
    instance_number: int | None = None,
    position: Vector3 | None = None,
    orientation: Sequence[float] | None = None,
    sop_class_uid: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write one frame of grayscale or RGB pixels with the display tags a viewer reads.

    Parameters
    ----------
    path
        The file to write; parent folders are created.
    pixels
        uint8/int8/uint16/int16 of shape (rows, cols), or uint8 (rows, cols, 3) for RGB.
        Default: :func:`sample_pixels` for 64 x 64 uint16 (uint8 RGB if ``photometric`` is RGB).
    modality
        Also picks the SOP class: CT, MR, CR and DX get their own, anything else is Secondary
        Capture. ``sop_class_uid`` overrides the choice.
    photometric
        MONOCHROME1, MONOCHROME2 or RGB.
    bits_stored
        Default: all the bits of the dtype. Values must fit.
    slope, intercept
        RescaleSlope/RescaleIntercept; giving one writes both (slope 1, intercept 0).
    windows
        ``[(center, width), ...]`` or with a third item, the explanation; several windows make
        multi-valued WindowCenter/WindowWidth/WindowCenterWidthExplanation.
    voi_lut, modality_lut
        ``(first_mapped, bits, data)``: one VOILUTSequence or ModalityLUTSequence item.
    pixel_spacing, imager_pixel_spacing
        Millimetres, one number for square pixels or ``(row, column)``.
    study_uid, series_uid, series_number, instance_number
        Pass the same UIDs to put several files in one study or series.
    position, orientation
        ImagePositionPatient (x, y, z) and ImageOrientationPatient (six direction cosines).
    transfer_syntax
        Explicit VR Little Endian by default; Implicit VR Little Endian, Explicit VR Big Endian
        and any syntax pydicom can encode (RLE Lossless, JPEG 2000 Lossless) also work.
    extra
        Keyword -> value, set last; None deletes the element.

    Returns
    -------
    Path
        The path written.
    """
    if pixels is None:
        pixels = _default_pixels(photometric)
    ds = _new_dataset(
        sop_class_uid or SOP_CLASS_BY_MODALITY.get(modality, SecondaryCaptureImageStorage),
        modality=modality,
        transfer_syntax=transfer_syntax,
        study_uid=study_uid,
        series_uid=series_uid,
        series_number=series_number,
        instance_number=instance_number,
    )
    if ds.SOPClassUID == SecondaryCaptureImageStorage:
        ds.ConversionType = "WSD"  # workstation: required by the SC Equipment module
    _set_pixels(ds, pixels, photometric=photometric, bits_stored=bits_stored)
    _set_geometry(
        ds,
        pixel_spacing=pixel_spacing,
        imager_pixel_spacing=imager_pixel_spacing,
        position=position,
        orientation=orientation,
    )
    _set_rescale(ds, slope, intercept)
    if modality_lut is not None:
        item = _lut_item(modality_lut)
        item.ModalityLUTType = "US"  # "unspecified", the generic value
        ds.ModalityLUTSequence = DicomSequence([item])
    if voi_lut is not None:
        ds.VOILUTSequence = DicomSequence([_lut_item(voi_lut)])
    _set_windows(ds, windows or [])
    _apply_extra(ds, extra)
    return _save(ds, path)


def _default_pixels(photometric: str) -> np.ndarray:
    """Return the default 64 x 64 test pattern, as RGB when the photometric asks for colour."""
    if photometric in ("RGB", "YBR_FULL"):
        gray = sample_pixels(dtype="uint8")
        return np.stack([gray, gray[::-1], gray[:, ::-1]], axis=-1)
    return sample_pixels()


def write_ct_series(
    folder: PathLike,
    n_slices: int,
    *,
    rows: int = 64,
    cols: int = 64,
    spacing: float = 2.5,
    pixel_spacing: float = 0.8,
    orientation: Sequence[float] = AXIAL,
    tilt: float = 0.0,
    instance_numbers: Literal["ascending", "descending"] = "ascending",
    shuffle_names: bool = True,
    seed: int = 0,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write a CT series whose file names do not sort in anatomical order.

    Stored values are HU + 1024 (RescaleIntercept -1024, slope 1, 12 bits stored): air outside
    an elliptical body of soft tissue with a bone ring, and a denser sphere in the middle
    slices, so every slice differs and a mis-sorted stack shows.

    Parameters
    ----------
    folder
        Where the files go; created if missing.
    n_slices
        How many slices.
    rows, cols, pixel_spacing
        In-plane size and spacing (mm).
    spacing
        Distance between slices along the normal (mm); also the SliceThickness.
    orientation
        ImageOrientationPatient of every slice; axial by default.
    tilt
        Degrees to rotate the slice plane about the patient's left-right axis, as an oblique
        acquisition; positions still step along the tilted plane's normal.
    instance_numbers
        InstanceNumber increasing along the normal ("ascending") or against it.
    shuffle_names
        Name the files in a seeded random order that is neither the anatomical order nor its
        reverse (for three or more slices), so that a viewer sorting by name is caught.
    seed
        Seed of the noise and of the name shuffle.

    Returns
    -------
    list of Path
        The files in anatomical order: increasing position along the slice normal.
    """
    row_dir, col_dir = _tilted(orientation, tilt)
    normal = np.cross(row_dir, col_dir)
    rng = np.random.default_rng(seed)
    names = _slice_names(n_slices, shuffle=shuffle_names, rng=rng)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_of_reference = generate_uid()

    paths = []
    for k in range(n_slices):
        hu = ct_phantom_slice(rows, cols, k / max(n_slices - 1, 1), rng=rng)
        offset = (k - (n_slices - 1) / 2) * spacing
        corner = -(cols / 2) * pixel_spacing * row_dir - (rows / 2) * pixel_spacing * col_dir
        position = corner + offset * normal
        number = k + 1 if instance_numbers == "ascending" else n_slices - k
        slice_extra = {
            "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
            "RescaleType": "HU",
            "SliceThickness": _ds(spacing),
            "SliceLocation": _ds(offset),
            "KVP": _ds(120),
            "FrameOfReferenceUID": frame_of_reference,
            "PositionReferenceIndicator": "",
            **(extra or {}),
        }
        paths.append(
            write_image(
                Path(folder) / names[k],
                (hu + 1024).astype(np.uint16),
                modality="CT",
                bits_stored=12,
                slope=1,
                intercept=-1024,
                windows=[(40, 400, "SOFT TISSUE"), (400, 1800, "BONE")],
                pixel_spacing=pixel_spacing,
                position=position,
                orientation=[*row_dir, *col_dir],
                study_uid=study_uid,
                series_uid=series_uid,
                series_number=series_number,
                instance_number=number,
                transfer_syntax=transfer_syntax,
                extra=slice_extra,
            )
        )
    return paths


def _tilted(orientation: Sequence[float], tilt: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the row and column directions rotated by ``tilt`` degrees about patient x."""
    angle = np.deg2rad(tilt)
    rotation = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.0, np.cos(angle), -np.sin(angle)],
            [0.0, np.sin(angle), np.cos(angle)],
        ]
    )
    cosines = np.asarray(orientation, dtype=np.float64)
    return rotation @ cosines[:3], rotation @ cosines[3:]


def _slice_names(n: int, *, shuffle: bool, rng: np.random.Generator) -> list[str]:
    """Return one file name per slice, in anatomical order of the slices they will hold.

    Shuffled names come from a permutation that is neither the identity nor, from three slices
    on, its reverse: sorting by name must then give neither order.
    """
    order = np.arange(n)
    if shuffle and n > 1:
        banned = [order.tolist()] + ([order[::-1].tolist()] if n > 2 else [])
        while order.tolist() in banned:
            order = rng.permutation(n)
    return [f"slice_{i:03d}.dcm" for i in order]


def ct_phantom_slice(
    rows: int, cols: int, z: float, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Return one slice of a simple body phantom in Hounsfield units (int16).

    Parameters
    ----------
    rows, cols
        The slice size.
    z
        Where the slice lies in the volume, 0 (first) to 1 (last). The body narrows toward both
        ends and a 100 HU sphere sits in the middle, so each slice is recognisable.
    rng
        Source of the 10 HU noise; None for none.
    """
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    u = (x - (cols - 1) / 2) / (cols / 2)  # -1..1 across the field of view
    v = (y - (rows - 1) / 2) / (rows / 2)
    scale = 0.75 + 0.15 * np.sin(np.pi * z)
    body = (u / (0.9 * scale)) ** 2 + (v / (0.65 * scale)) ** 2 <= 1
    ring = np.abs(np.hypot(u - 0.0, v - 0.25) - 0.12) < 0.05
    sphere_radius = 0.25 * max(0.0, 1 - (2 * (z - 0.5) / 0.6) ** 2) ** 0.5
    sphere = np.hypot(u + 0.35, v + 0.1) < sphere_radius

    hu = np.full((rows, cols), -1000.0)
    hu[body] = 40.0
    hu[body & ring] = 700.0
    hu[body & sphere] = 100.0
    if rng is not None:
        hu += rng.normal(0.0, 10.0, hu.shape)
    return np.clip(np.round(hu), -1024, 3071).astype(np.int16)


def write_multiframe(
    path: PathLike,
    frames: np.ndarray | None = None,
    *,
    n_frames: int = 8,
    rows: int = 64,
    cols: int = 64,
    modality: str = "OT",
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    functional_groups: bool = False,
    slope: float | None = None,
    intercept: float | None = None,
    windows: Sequence[Window] | None = None,
    pixel_spacing: float | Sequence[float] = 1.0,
    spacing: float = 2.0,
    orientation: Sequence[float] = AXIAL,
    seed: int = 0,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_class_uid: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write many frames into one file, plain or enhanced (with functional groups).

    Plain (the default) is a Multi-frame Secondary Capture: NumberOfFrames, a FrameTime cine
    pointer, and rescale and windows at the top level. With ``functional_groups`` the file
    follows the enhanced IODs instead: spacing, orientation, rescale and windows live in the
    SharedFunctionalGroupsSequence and each frame's position in the
    PerFrameFunctionalGroupsSequence; CT and MR then get the Enhanced CT/MR SOP classes.

    Parameters
    ----------
    frames
        (n, rows, cols) grayscale or (n, rows, cols, 3) uint8 RGB. Default: ``n_frames``
        seeded test patterns of ``rows`` x ``cols``, each brighter than the one before.
    spacing
        Distance between frame positions along the normal (mm), with ``functional_groups``.
    Other parameters
        As for :func:`write_image`.

    Returns
    -------
    Path
        The path written.
    """
    if frames is None:
        frames = _default_frames(n_frames, rows, cols, photometric=photometric, seed=seed)
    frames = np.asarray(frames)
    ds = _new_dataset(
        sop_class_uid or _multiframe_sop_class(frames, modality, functional_groups),
        modality=modality,
        transfer_syntax=transfer_syntax,
        study_uid=study_uid,
        series_uid=series_uid,
        series_number=None,
        instance_number=None,
    )
    _set_pixels(ds, frames, photometric=photometric, bits_stored=bits_stored, multiframe=True)
    if functional_groups:
        _set_functional_groups(
            ds,
            n_frames=len(frames),
            slope=slope,
            intercept=intercept,
            windows=windows or [],
            pixel_spacing=pixel_spacing,
            spacing=spacing,
            orientation=orientation,
        )
    else:
        ds.ConversionType = "WSD"
        ds.FrameTime = _ds(100.0)
        ds.FrameIncrementPointer = 0x00181063  # (0018,1063) FrameTime
        _set_geometry(
            ds,
            pixel_spacing=pixel_spacing,
            imager_pixel_spacing=None,
            position=None,
            orientation=None,
        )
        _set_rescale(ds, slope, intercept)
        _set_windows(ds, windows or [])
    _apply_extra(ds, extra)
    return _save(ds, path)


def _default_frames(
    n_frames: int, rows: int, cols: int, *, photometric: str, seed: int
) -> np.ndarray:
    """Return ``n_frames`` test patterns, each a little brighter, so frames can be told apart."""
    dtype = "uint8" if photometric in ("RGB", "YBR_FULL") else "uint16"
    stack = []
    for k in range(n_frames):
        frame = sample_pixels(rows, cols, dtype=dtype, bits_stored=8 if dtype == "uint8" else 12,
                             seed=seed + k)
        frame = np.minimum(frame.astype(np.int64) + 16 * k, np.iinfo(dtype).max).astype(dtype)
        stack.append(np.stack([frame] * 3, axis=-1) if dtype == "uint8" else frame)
    return np.stack(stack)


def _multiframe_sop_class(frames: np.ndarray, modality: str, functional_groups: bool) -> str:
    """Pick the storage class: Enhanced CT/MR with functional groups, else Multi-frame SC."""
    if functional_groups and modality == "CT":
        return EnhancedCTImageStorage
    if functional_groups and modality == "MR":
        return EnhancedMRImageStorage
    if frames.ndim == 4:
        return MultiFrameTrueColorSecondaryCaptureImageStorage
    if frames.dtype.itemsize == 1:
        return MultiFrameGrayscaleByteSecondaryCaptureImageStorage
    return MultiFrameGrayscaleWordSecondaryCaptureImageStorage


def _set_functional_groups(
    ds: Dataset,
    *,
    n_frames: int,
    slope: float | None,
    intercept: float | None,
    windows: Sequence[Window],
    pixel_spacing: float | Sequence[float],
    spacing: float,
    orientation: Sequence[float],
) -> None:
    """Put the per-file facts in the shared group and each frame's position in its own."""
    measures = Dataset()
    measures.PixelSpacing = [_ds(v) for v in _pair(pixel_spacing)]
    measures.SliceThickness = _ds(spacing)
    plane = Dataset()
    plane.ImageOrientationPatient = [_ds(v) for v in orientation]
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([plane])
    if slope is not None or intercept is not None:
        transform = Dataset()
        transform.RescaleIntercept = _ds(0.0 if intercept is None else intercept)
        transform.RescaleSlope = _ds(1.0 if slope is None else slope)
        transform.RescaleType = "HU" if ds.Modality == "CT" else "US"
        shared.PixelValueTransformationSequence = DicomSequence([transform])
    if windows:
        voi = Dataset()
        _set_windows(voi, windows)
        shared.FrameVOILUTSequence = DicomSequence([voi])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    per_frame = []
    for k in range(n_frames):
        position = Dataset()
        position.ImagePositionPatient = [_ds(v) for v in k * spacing * normal]
        content = Dataset()
        content.InStackPositionNumber = k + 1
        content.DimensionIndexValues = [k + 1]
        group = Dataset()
        group.PlanePositionSequence = DicomSequence([position])
        group.FrameContentSequence = DicomSequence([content])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.ContentDate = _STUDY_DATE
    ds.ContentTime = _STUDY_TIME
    ds.FrameOfReferenceUID = generate_uid()


def write_radiograph(
    path: PathLike,
    pixels: np.ndarray | None = None,
    *,
    rows: int = 256,
    cols: int = 256,
    modality: Literal["DX", "CR"] = "DX",
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2",
    bits_stored: int = 12,
    imager_pixel_spacing: float | Sequence[float] = 0.15,
    windows: Sequence[Window] | None = None,
    view_position: str = "PA",
    body_part: str = "CHEST",
    seed: int = 0,
    **options: Any,
) -> Path:
    """Write a DX or CR projection image, looking the same whichever photometric is chosen.

    The content is an attenuation map (bright body with a darker pair of "lungs" and a bright
    spine on black air). In MONOCHROME1 the stored values are inverted, so that a viewer that
    honours the photometric shows the same picture either way; a viewer that ignores it shows
    a negative. The default window spans the 1st to 99th percentile of the stored values.

    Parameters
    ----------
    pixels
        Stored values (uint16) to write as they are; default: the seeded attenuation map.
    rows, cols, bits_stored, seed
        Size, depth and noise seed of the default content.
    imager_pixel_spacing
        ImagerPixelSpacing in mm (at the detector, as projection images carry it).
    windows
        Default: one window from the stored values' percentiles.
    view_position, body_part
        ViewPosition and BodyPartExamined.
    options
        Passed on to :func:`write_image` (``extra``, UIDs, ``transfer_syntax``, ...).

    Returns
    -------
    Path
        The path written.
    """
    if pixels is None:
        unit = _projection_phantom(rows, cols, seed=seed)
        if photometric == "MONOCHROME1":
            unit = 1.0 - unit
        pixels = np.round(unit * (2**bits_stored - 1)).astype(np.uint16)
    if windows is None:
        low, high = np.percentile(pixels, [1, 99])
        windows = [((low + high) / 2, max(high - low, 1.0))]
    extra = {
        "PresentationIntentType": "FOR PRESENTATION",
        "ViewPosition": view_position,
        "BodyPartExamined": body_part,
        "ImageType": ["ORIGINAL", "PRIMARY"],
        "PatientOrientation": ["L", "F"] if view_position == "PA" else ["R", "F"],
        **(options.pop("extra", None) or {}),
    }
    return write_image(
        path,
        pixels,
        modality=modality,
        photometric=photometric,
        bits_stored=bits_stored,
        windows=windows,
        imager_pixel_spacing=imager_pixel_spacing,
        extra=extra,
        **options,
    )


def _projection_phantom(rows: int, cols: int, *, seed: int) -> np.ndarray:
    """Return a crude torso projection in [0, 1]: 1 is full attenuation (white in MONOCHROME2)."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    u = (x - cols / 2) / (cols / 2)
    v = (y - rows / 2) / (rows / 2)
    image = np.full((rows, cols), 0.05)
    image[(u / 0.85) ** 2 + (v / 1.1) ** 2 <= 1] = 0.6  # body
    for side in (-1, 1):
        lung = ((u - 0.4 * side) / 0.28) ** 2 + ((v + 0.1) / 0.6) ** 2 <= 1
        image[lung] = 0.25
    image[np.abs(u) < 0.08] = np.maximum(image[np.abs(u) < 0.08], 0.85)  # spine
    noise = np.random.default_rng(seed).normal(0.0, 0.01, image.shape)
    return np.clip(image + noise, 0.0, 1.0)


def write_junk(
    path: PathLike, *, size: int = 4096, seed: int = 0, fake_preamble: bool = False
) -> Path:
    """Write random bytes, which no DICOM reader should accept.

    With ``fake_preamble`` the file starts with a 128-byte preamble and "DICM" like a real one
    and only then turns to noise: the harder case of a file that passes a magic-number check.
    """
    noise = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    data = (bytes(128) + b"DICM" + noise) if fake_preamble else noise
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_truncated(path: PathLike, *, keep: float = 0.5, **image_options: Any) -> Path:
    """Write a valid image file cut off part way through its pixel data.

    Pixel Data is the last element, so the file is written whole and then cut at
    ``keep`` (0 to 1) of the way through the pixel bytes: the header reads, the pixels do not.

    Parameters
    ----------
    keep
        Fraction of the pixel data's bytes to keep.
    image_options
        Passed on to :func:`write_image` (``pixels``, ``modality``, ...).
    """
    path = write_image(path, **image_options)
    whole = path.read_bytes()
    pixel_bytes = len(dcmread(path).PixelData)
    start = len(whole) - pixel_bytes
    path.write_bytes(whole[: start + int(pixel_bytes * keep)])
    return path


def write_non_image(
    path: PathLike,
    *,
    text: str = "No acute cardiopulmonary abnormality.",
    study_uid: str | None = None,
    series_uid: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a valid DICOM object with no pixel data: a Basic Text Structured Report.

    A study folder often holds reports beside its images; a viewer should skip them with a
    clear note rather than fail.
    """
    ds = _new_dataset(
        BasicTextSRStorage,
        modality="SR",
        transfer_syntax=transfer_syntax,
        study_uid=study_uid,
        series_uid=series_uid,
        series_number=99,
        instance_number=1,
    )
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence()
    ds.PerformedProcedureCodeSequence = DicomSequence()
    ds.ContentDate = _STUDY_DATE
    ds.ContentTime = _STUDY_TIME
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    report = _code("18748-4", "LN", "Diagnostic Imaging Report")
    ds.ConceptNameCodeSequence = DicomSequence([report])
    finding = Dataset()
    finding.RelationshipType = "CONTAINS"
    finding.ValueType = "TEXT"
    finding.ConceptNameCodeSequence = DicomSequence([_code("121071", "DCM", "Finding")])
    finding.TextValue = text
    ds.ContentSequence = DicomSequence([finding])
    _apply_extra(ds, extra)
    return _save(ds, path)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """Return a code sequence item."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


# --------------------------------------------------------------------------------------------
# Hostile files: what an attacker writes, so that each refusal is tested on the real thing
# --------------------------------------------------------------------------------------------

#: The Media Storage Directory SOP Class of a DICOMDIR.
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
#: Parametric Map Storage: the image class that carries Float Pixel Data.
PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"


def write_dicomdir(path: PathLike, file_ids: Sequence[str | Sequence[str]]) -> Path:
    """Write a DICOMDIR with one IMAGE record per Referenced File ID, each taken as given.

    An ID is a list of components or one string (pydicom splits it at backslashes). Nothing
    is checked, so that IDs with ``..``, absolute paths or slashes can be written.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(MEDIA_STORAGE_DIRECTORY)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "HOSTILE"
    ds.FileSetConsistencyFlag = 0
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CS value with "/" or "." is what is being written
        for file_id in file_ids:
            record = Dataset()
            record.DirectoryRecordType = "IMAGE"
            record.ReferencedFileID = file_id if isinstance(file_id, str) else list(file_id)
            record.ReferencedSOPClassUIDInFile = SecondaryCaptureImageStorage
            record.ReferencedSOPInstanceUIDInFile = generate_uid()
            records.append(record)
        ds.DirectoryRecordSequence = DicomSequence(records)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    return path


def write_false_claim(
    path: PathLike,
    *,
    rows: int | None = None,
    columns: int | None = None,
    frames: int | None = None,
    bits_allocated: int | None = None,
    samples: int | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Path:
    """Write a real 4 x 4 image, then make its header claim another geometry.

    The pixel data stays 32 bytes (or one compressed frame), so a claim of 65535 x 65535 x
    10,000 frames sits in a file of a few hundred bytes: the shape of a memory bomb.
    """
    path = write_image(path, sample_pixels(4, 4), transfer_syntax=transfer_syntax)
    ds = dcmread(path)
    claims = {"Rows": rows, "Columns": columns, "NumberOfFrames": frames, "BitsAllocated": bits_allocated,
              "SamplesPerPixel": samples}
    for keyword, value in claims.items():
        if value is not None:
            setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_float_image(path: PathLike, pixels: np.ndarray, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write float32 pixels as Float Pixel Data (a Parametric Map's encoding); NaN and infinity pass.

    Parameters
    ----------
    pixels
        (rows, cols) float32 values, written as they are.
    extra
        Keyword -> value, set last; None deletes the element.
    """
    arr = np.asarray(pixels, dtype="<f4")
    ds = _new_dataset(
        PARAMETRIC_MAP_STORAGE,
        modality="OT",
        transfer_syntax=ExplicitVRLittleEndian,
        study_uid=None,
        series_uid=None,
        series_number=None,
        instance_number=None,
    )
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = 32
    ds.FloatPixelData = arr.tobytes()
    _apply_extra(ds, extra)
    return _save(ds, path)


def write_deflate_bomb(path: PathLike, inflated_bytes: int, *, rows: int = 4096, cols: int = 4096) -> Path:
    """Write a deflated data set of about a megabyte that inflates to ``inflated_bytes``.

    The inflated data set is an image header whose Pixel Data holds ``inflated_bytes`` of
    zeros (claimed as 16-bit frames of ``rows`` x ``cols``). It is built without compressing
    gigabytes: after a full flush deflate starts afresh, so one compressed mebibyte of zeros
    repeated is a valid stream of many.
    """
    chunk = 2**20
    frame_bytes = rows * cols * 2
    ds = _new_dataset(SecondaryCaptureImageStorage, modality="OT", transfer_syntax=DeflatedExplicitVRLittleEndian,
                      study_uid=None, series_uid=None, series_number=None, instance_number=None)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, max(inflated_bytes // frame_bytes, 1)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    pixel_header = b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", inflated_bytes)

    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = deflater.compress(body.getvalue() + pixel_header) + deflater.flush(zlib.Z_FULL_FLUSH)
    zeros = deflater.compress(bytes(chunk)) + deflater.flush(zlib.Z_FULL_FLUSH)
    tail = deflater.compress(bytes(inflated_bytes % chunk)) + deflater.flush()
    stream += zeros * (inflated_bytes // chunk) + tail

    meta = DicomBytesIO()
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(128) + b"DICM" + meta.getvalue() + stream)
    return path


def write_unconvertible_value(path: PathLike, vr: bytes = b"LK") -> Path:
    """Write an image whose Study Description claims another VR: unknown (``LK``) or one its
    four bytes do not fit (``FD`` needs eight), so converting the value raises in pydicom."""
    path = write_image(path, extra={"StudyDescription": "ABCD"})
    data = path.read_bytes()
    start = data.index(b"\x08\x00\x30\x10LO")  # (0008,1030) LO, explicit VR little endian
    path.write_bytes(data[: start + 4] + vr + data[start + 6 :])
    return path


def nested_sequence(depth: int) -> DicomSequence:
    """Sequences nested ``depth + 1`` deep: each item holds a Content Sequence, the last a Code Meaning."""
    inner = Dataset()
    inner.CodeMeaning = "deep"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = DicomSequence([inner])
        inner = outer
    return DicomSequence([inner])


def write_nested_sequences(path: PathLike, depth: int) -> Path:
    """Write an image holding a Content Sequence nested ``depth`` levels deep."""
    return write_image(path, extra={"ContentSequence": nested_sequence(depth - 1)})


def write_rle_overrun(path: PathLike) -> Path:
    """Write a 64 x 64 16-bit RLE image whose two segments each decode to 5120 bytes, not 4096.

    pydicom's own RLE decoder keeps the first 4096 (with a warning); pylibjpeg-rle, written in
    Rust, panics on it with a many-line backtrace.
    """
    path = write_image(path, np.zeros((64, 64), np.uint16), transfer_syntax=RLELossless)
    ds = dcmread(path)
    segment = bytes([0x81, 0x00]) * 40  # 40 runs of 128 zeros
    header = struct.pack("<16I", 2, 64, 64 + len(segment), *([0] * 13))
    ds.PixelData = encapsulate([header + segment + segment])
    ds.save_as(path, enforce_file_format=True)
    return path
