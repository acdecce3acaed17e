"""What a model sees of a DICOM frame: the card's window (or the file's), then the card's input.

No Qt here; the viewer and the command line build a model's input the same way.
"""

from __future__ import annotations

import torch

from explain.model_card import ModelCard
from explain.preprocessing import to_model_input
from viewer.dicom_image import FrameImage
from viewer.dicom_pixels import Voi, Window


def model_voi(image: FrameImage, card: ModelCard) -> Voi:
    """The card's window when it names one (the model was trained with it), else the file's."""
    if card.window is not None:
        return Window(card.window[0], card.window[1], "Model", "LINEAR")
    voi = image.default_voi()
    if voi is None:
        raise ValueError("a colour image cannot be explained by a grey-level model")
    return voi


def frame_model_input(image: FrameImage, card: ModelCard) -> torch.Tensor:
    """The exact tensor ``(channels, height, width)`` the model is given for this frame."""
    if image.is_colour:
        raise ValueError("a colour image cannot be explained by a grey-level model")
    unit = image.unit_values(model_voi(image, card), invert=image.inverted_by_default)
    return to_model_input(unit, card.input)
