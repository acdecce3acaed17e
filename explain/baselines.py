"""Reference images that stand for "no information": a constant, the mean, black, or a blur.

Occlusion hides windows behind one, integrated gradients walks from one to the input. A blurred
copy removes detail while keeping the broad brightness, which is closer to what the model has
seen. Black is the image's own darkest value, the black patch of the article the product grew
from: on a radiograph fluid is soft-tissue grey, the grey of the mean, so hiding fluid behind
the mean changes little, while a black patch takes it away (see the README's quality table).
"""

from __future__ import annotations

import torch
from scipy import ndimage

BASELINE_NAMES = ("mean", "black", "blur")


def parse_baseline(text: str) -> float | str:
    """A baseline is a number in model-input space, or the name of a derived image."""
    try:
        return float(text)
    except ValueError:
        if text in BASELINE_NAMES:
            return text
        raise ValueError(f"baseline must be a number, 'mean', 'black' or 'blur', not {text!r}") from None


def baseline_image(x: torch.Tensor, baseline: float | str, blur_sigma: float) -> torch.Tensor:
    """The baseline for input ``x`` ``(channels, height, width)``, on x's device and dtype.

    ``blur_sigma`` (in input pixels) sets how much detail the blur removes; each method picks
    it from its own scale.
    """
    if baseline == "mean":
        return torch.full_like(x, float(x.mean()))
    if baseline == "black":
        return torch.amin(x, dim=(1, 2), keepdim=True).expand_as(x).clone()
    if baseline == "blur":
        sigma = max(float(blur_sigma), 1.0)
        blurred = ndimage.gaussian_filter(x.detach().cpu().numpy(), sigma=(0, sigma, sigma), mode="nearest")
        return torch.as_tensor(blurred, dtype=x.dtype, device=x.device)
    if isinstance(baseline, str):
        return baseline_image(x, parse_baseline(baseline), blur_sigma)
    return torch.full_like(x, float(baseline))


def broad_blur_sigma(x: torch.Tensor) -> float:
    """A blur a sixteenth of the image wide: broad enough to wipe out a finding's detail."""
    return max(x.shape[1:]) / 16.0
