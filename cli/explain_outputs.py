"""What ``main.py explain`` writes for one explained image, each file written atomically.

Formats: ``npz`` (the arrays of the command-line contract), ``png`` (the overlay), and through
:mod:`exports.dicom_objects` and :mod:`exports.key_image_report` the same files as File > Export:
``pm`` (DICOM Parametric Map), ``sc`` (DICOM Secondary Capture) and ``html`` (key-image report),
de-identified unless asked otherwise.

An output is first written under a hidden temporary name in its own folder and then renamed, so
a run that is stopped halfway never leaves a truncated file under the real name: a batch that is
started again can trust every result file it finds. When the folder itself refuses a file
(read-only, full, something in the way) the error is a :class:`WriteError` with one line, told
apart from an image that cannot be written, because no later image would fare better.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import stat
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
                            target=np.int64(outcome.request.settings.target), score=np.float64(outcome.score),
                            explained_score=np.str_(outcome.request.settings.explained_score))


def write_png(path: Path, result: Explained, deidentify: bool) -> None:
    """The overlay as the viewer draws it, on the image at its default window.

    Refused when de-identifying a source with burned-in annotation, as the DICOM exports are.
    """
    from exports.deidentify import BURNED_IN_REFUSAL, has_burned_in_annotation

    if deidentify and has_burned_in_annotation(result.frame.header):
        raise OutputError(BURNED_IN_REFUSAL)
    shown, show = result.shown(), result.display.show
    grey = result.image.render(result.image.default_voi(), result.image.inverted_by_default)
    Image.fromarray(blend(grey, shown, heat_levels(shown, show), show=show)).save(path, format="PNG")


class OutputError(Exception):
    """An output that could not be written; the text is one line."""


class WriteError(OutputError):
    """The folder refused a file: read-only, full, permission denied, or something in the way.

    The folder is at fault, not the image, so a batch stops at the first one instead of
    explaining image after image that cannot be kept.
    """


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


#: What :func:`make_temporary` names the temporary file for NAME: ``.NAME.RANDOM.partial``.
TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.(?P<random>[A-Za-z0-9_]+)\.partial")


def refusal(path: Path, error: OSError) -> WriteError:
    """The folder's refusal to take ``path``, in one line with the system's reason."""
    return WriteError(f"cannot write {path}: {error.strerror or error}")


def make_temporary(path: Path) -> Path:
    """A new, empty hidden file beside ``path`` to write it under; WriteError when the folder refuses."""
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    except OSError as error:
        raise refusal(path, error) from None
    os.close(handle)
    return Path(temporary)


def refused_while_writing(error: OSError, temporary: Path) -> bool:
    """Whether a writer's OSError is the folder refusing the temporary file, not a fault of the image.

    A failed system call that names no file (the disk filled up mid-write) or names the temporary
    file is the folder's; one naming another file was reading something, and an error without
    an errno (PIL's "cannot write mode ...") is about the image.
    """
    if error.errno is None:
        return False
    named = error.filename
    return named is None or (isinstance(named, (str, bytes)) and os.fsdecode(named) == str(temporary))


def publish(temporary: Path, path: Path) -> None:
    """Give the finished temporary file ordinary permissions and rename it to ``path``."""
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; results are ordinary files
        os.replace(temporary, path)
    except OSError as error:
        raise refusal(path, error) from None


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write`` under a temporary name, then rename it into place.

    WriteError (one line) when the folder refuses; ``write``'s other errors pass through as they
    are. Either way no temporary file is left behind, unless the process itself is killed.
    """
    temporary = make_temporary(path)
    try:
        try:
            write(temporary)
        except OSError as error:
            if refused_while_writing(error, temporary):
                raise refusal(path, error) from None
            raise
        publish(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a folder that refused the file may refuse this too
            temporary.unlink(missing_ok=True)
        raise


def check_writable(path: Path) -> None:
    """WriteError now, before any work is done, when the folder would refuse ``path``."""
    temporary = make_temporary(path)
    try:
        temporary.unlink()
    except OSError as error:
        raise refusal(path, error) from None


def remove_temporaries(folder: Path, ours: Callable[[str], bool]) -> list[Path]:
    """Remove the temporary files a killed run left in ``folder``; the paths removed.

    Only regular files named as :func:`make_temporary` names them, for a NAME that ``ours``
    accepts: never a folder, a link, or anyone else's file. The caller must hold the folder, so
    that no run still writing loses its own. WriteError when one cannot be removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError as error:
        raise WriteError(f"cannot read {folder}: {error.strerror or error}") from None
    for entry in entries:
        match = TEMPORARY_NAME.fullmatch(entry.name)
        if match is None or not ours(match["name"]) or not is_regular_file(entry):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as error:
            raise WriteError(f"cannot remove {entry.path}: {error.strerror or error}") from None
        removed.append(Path(entry.path))
    return removed


def is_regular_file(entry: os.DirEntry) -> bool:
    """Whether a folder entry is itself a regular file (a link to one is not)."""
    try:
        return stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode)
    except OSError:
        return False


def write_output(path: Path, fmt: str, result: Explained, deidentify: bool = True) -> None:
    """Write one output file of the given format, atomically; DICOM and reports de-identified by default.

    OutputError with one line when an exporter refuses (a source with burned-in annotation),
    WriteError when the folder does.
    """
    replace_atomically(path, lambda temporary: FORMATS[fmt][1](temporary, result, deidentify))
