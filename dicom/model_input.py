"""What a model sees of a DICOM frame, up to the model's own preprocessing: grey values in [0, 1].

The card's window when it names one (the model was trained with it), else the file's; then the
MONOCHROME1 inversion. Resizing and normalising to the card's input belong to the engine
(:func:`explain.preprocessing.to_model_input`), so this layer needs no torch and the viewer, the
command line and the training script all build a model's input the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dicom.image import FrameImage
from dicom.pixels import Voi, Window

COLOUR_REFUSED = "a colour image cannot be explained by a grey-level model"
NOT_FINITE = ("the image's values are not all finite numbers (NaN or infinity: check its Rescale Slope and "
              "Intercept and its pixels), so no model is run on it")
WINDOW_NOT_FINITE = "the window gives values that are not finite numbers, so no model is run on this image"


def model_voi(image: FrameImage, window: Sequence[float] | None) -> Voi:
    """The model's ``[center, width]`` window when it has one, else the file's own VOI."""
    if window is not None:
        return Window(float(window[0]), float(window[1]), "Model", "LINEAR")
    voi = image.default_voi()
    if voi is None:
        raise ValueError(COLOUR_REFUSED)
    return voi


def model_unit_image(image: FrameImage, window: Sequence[float] | None) -> np.ndarray:
    """The frame as the model's grey image in [0, 1]; ValueError with one line when it cannot be.

    Refused: a colour image, and an image whose values are not all finite. A NaN or an
    infinity (from a slope of 1e308, an infinite intercept, NaN float pixels, a NaN window)
    would flow through the model into a NaN score that looks like a result; a window may
    even clip an infinity to white and hide it, so the values are checked before and after it.
    """
    if image.is_colour:
        raise ValueError(COLOUR_REFUSED)
    try:
        require_finite(image.modality_values(), NOT_FINITE)
        unit = image.unit_values(model_voi(image, window), invert=image.inverted_by_default)
    except MemoryError:
        raise ValueError("not enough memory to prepare the model's input") from None
    require_finite(unit, WINDOW_NOT_FINITE)
    return unit


def require_finite(values: np.ndarray, reason: str) -> None:
    """ValueError with ``reason`` unless every value is a finite number."""
    if not np.isfinite(values).all():
        raise ValueError(reason)
