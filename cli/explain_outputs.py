"""What ``main.py explain`` writes for one explained image, each file written atomically.

An output is first written under a hidden temporary name in its own folder and then renamed, so
a run that is stopped halfway never leaves a truncated file under the real name: a batch that is
started again can trust every result file it finds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from explain.engine import Update
from explain.preprocessing import to_image_grid
from viewer.dicom_image import FrameImage
from viewer.heat_colours import blend, heat_levels


@dataclass(frozen=True)
class Explained:
    """A finished explanation of one image: everything an output needs."""

    image: FrameImage
    model_input: torch.Tensor
    final: Update
    target: int

    def heatmap(self) -> np.ndarray:
        """The map on the image's own pixel grid."""
        return to_image_grid(self.final.heatmap, self.image.stored.shape[:2])


def write_npz(path: Path, result: Explained) -> None:
    """The arrays of the command-line contract (see DESIGN.md, "Command line")."""
    with open(path, "wb") as file:
        np.savez_compressed(file, attribution=result.final.attribution.astype(np.float32),
                            model_input=result.model_input.numpy(), heatmap=result.heatmap(),
                            target=np.int64(result.target), score=np.float64(result.final.figures["score"]))


def write_png(path: Path, result: Explained) -> None:
    """The overlay as the viewer draws it, on the image at its default window."""
    heatmap = result.heatmap()
    grey = result.image.render(result.image.default_voi(), result.image.inverted_by_default)
    Image.fromarray(blend(grey, heatmap, heat_levels(heatmap))).save(path, format="PNG")


#: Each output format: the ending of its file name and the function that writes it.
FORMATS: dict[str, tuple[str, Callable[[Path, Explained], None]]] = {
    "npz": (".npz", write_npz),
    "png": (".png", write_png),
}


def format_of(path: Path) -> str:
    """The format a file name asks for; ValueError with one line when none matches."""
    for name, (ending, _writer) in FORMATS.items():
        if path.name.lower().endswith(ending):
            return name
    endings = " or ".join(ending for ending, _writer in FORMATS.values())
    raise ValueError(f"--out must end in {endings}, not {path.suffix or 'nothing'}")


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


def write_output(path: Path, fmt: str, result: Explained) -> None:
    """Write one output file of the given format, atomically."""
    replace_atomically(path, lambda temporary: FORMATS[fmt][1](temporary, result))
