"""From a displayed image to the model's input, and from the model's grid back to the image.

The viewer's pixel pipeline (modality LUT, VOI, MONOCHROME1 inversion) gives a grey image in
[0, 1]; what happens after that is the card's business and lives here: resize to the card's
size, repeat to its channels, normalise. The inverse resize puts a heatmap computed on the
model's grid back on the image's own pixels, so it lines up with the anatomy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from explain.model_card import InputSpec


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(..., rows, cols)`` with pixel centres aligned, antialiased.

    Antialiasing matters when a 2000-pixel radiograph shrinks to 224: without it, thin
    structures such as ribs alias into stripes the model never saw in training.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image.clone()
    batch = image.reshape(-1, 1, *image.shape[-2:]).to(torch.float32)
    out = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*image.shape[:-2], *size)


def to_model_input(unit_image: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """The model input ``(channels, height, width)`` for a grey image in [0, 1]."""
    image = torch.as_tensor(np.ascontiguousarray(unit_image, dtype=np.float32))
    if image.ndim != 2:
        raise ValueError(f"expected a grey image, got shape {tuple(image.shape)}")
    small = resize(image, (spec.height, spec.width))
    channels = small.unsqueeze(0).repeat(spec.channels, 1, 1)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
    return ((channels - mean) / std).contiguous()


def to_image_grid(heatmap: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """A ``(height, width)`` map on the model's grid, resized back onto the image's pixels.

    NaN (not yet known) stays NaN where it dominates, so a partial map does not bleed.
    """
    grid = torch.as_tensor(np.asarray(heatmap, dtype=np.float32))
    known = torch.isfinite(grid)
    values = resize(torch.where(known, grid, torch.zeros_like(grid)), image_shape)
    weight = resize(known.to(torch.float32), image_shape)
    out = torch.where(weight > 0.5, values / weight.clamp_min(1e-6), torch.full_like(values, float("nan")))
    return out.numpy().astype(np.float32)
