"""What ``main.py explain`` writes for one explained image, each file written atomically.

Formats: ``npz`` (the arrays of the command-line contract), ``png`` (the overlay), and through
:mod:`exports.dicom_objects` and :mod:`exports.key_image_report` the same files as File > Export:
``pm`` (DICOM Parametric Map), ``sc`` (DICOM Secondary Capture) and ``html`` (key-image report),
de-identified unless asked otherwise.

An output is first written under a hidden temporary name in its own folder and then renamed, so
a run that is stopped halfway never leaves a truncated file under the real name: a batch that is
started again can trust every result file it finds.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from exports.explained import Explained
from exports.heat_colours import blend, heat_levels


def write_npz(path: Path, result: Explained, _deidentify: bool) -> None:
    """The arrays of the command-line contract (see DESIGN.md, "Command line")."""
    with open(path, "wb") as file:
        outcome = result.outcome
        np.savez_compressed(file, attribution=outcome.final.attribution.astype(np.float32),
                            model_input=outcome.request.model_input.numpy(), heatmap=result.heatmap(),
                            target=np.int64(outcome.request.settings.target), score=np.float64(outcome.score))


def write_png(path: Path, result: Explained, _deidentify: bool) -> None:
    """The overlay as the viewer draws it, on the image at its default window."""
    heatmap = result.heatmap()
    grey = result.image.render(result.image.default_voi(), result.image.inverted_by_default)
    Image.fromarray(blend(grey, heatmap, heat_levels(heatmap))).save(path, format="PNG")


class OutputError(Exception):
    """An output that could not be written; the text is one line."""


def exporter(module: str, writer: str) -> Callable[[Path, Explained, bool], None]:
    """A format written by one of the viewer's Qt-free exporters, imported only when it is used.

    The DICOM exporters load highdicom, which an ``npz`` run has no need to wait for.
    """
    def write(path: Path, result: Explained, deidentify: bool) -> None:
        from exports.dicom_objects import ExportError

        try:
            getattr(importlib.import_module(module), writer)(result.for_export(), path, deidentify=deidentify)
        except ExportError as error:
            raise OutputError(str(error)) from None

    return write


#: Each output format: the ending of its file name and the function that writes it.
FORMATS: dict[str, tuple[str, Callable[[Path, Explained, bool], None]]] = {
    "npz": (".npz", write_npz),
    "png": (".png", write_png),
    "pm": (".pm.dcm", exporter("exports.dicom_objects", "write_parametric_map")),
    "sc": (".sc.dcm", exporter("exports.dicom_objects", "write_secondary_capture")),
    "html": (".html", exporter("exports.key_image_report", "write_report")),
}


def format_of(path: Path) -> str:
    """The format a file name asks for; ValueError with one line when none matches."""
    for name, (ending, _writer) in FORMATS.items():
        if path.name.lower().endswith(ending):
            return name
    endings = ", ".join(ending for ending, _writer in FORMATS.values())
    raise ValueError(f"--out must end in one of {endings}, or name a folder (an existing one, or a name "
                     f"without an ending), not {path.name}")


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write`` under a temporary name, then rename it into place."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    try:
        write(Path(temporary))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; results are ordinary files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_output(path: Path, fmt: str, result: Explained, deidentify: bool = True) -> None:
    """Write one output file of the given format, atomically; DICOM and reports de-identified by default.

    OutputError with one line when an exporter refuses (a source with burned-in annotation).
    """
    replace_atomically(path, lambda temporary: FORMATS[fmt][1](temporary, result, deidentify))
