"""The heatmap's colours, shared by the overlay on screen and the images written to disk.

No Qt here: the command line writes the same picture the viewer shows.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

COLOUR_MAP_FILE = Path(__file__).resolve().parents[1] / "resources" / "colormaps" / "inferno.csv"


@cache
def heat_table() -> np.ndarray:
    """The colour map as 256 rows of 8-bit RGB, dark (little) to bright (much)."""
    rows = np.loadtxt(COLOUR_MAP_FILE, delimiter=",", comments=";")
    return np.rint(rows * 255).astype(np.uint8)


def heat_levels(heatmap: np.ndarray) -> tuple[float, float]:
    """The colour scale for a map: zero up to its largest positive value.

    Only evidence *for* the target is coloured; a fixed floor at zero keeps "no effect"
    transparent whatever the method's scale.
    """
    finite = heatmap[np.isfinite(heatmap)]
    top = float(finite.max()) if finite.size else 0.0
    return 0.0, top if top > 0 else 1.0


def heat_lut(opacity: float, threshold: float) -> np.ndarray:
    """RGBA table for the overlay: the colour map, transparent below the threshold.

    ``threshold`` is a fraction of the colour scale, ``opacity`` the alpha of what passes it.
    """
    alpha = np.where(np.linspace(0.0, 1.0, 256) >= threshold, round(255 * opacity), 0).astype(np.uint8)
    return np.column_stack([heat_table(), alpha])


def blend(grey: np.ndarray, heatmap: np.ndarray, levels: tuple[float, float], opacity: float = 0.6,
          threshold: float = 0.1) -> np.ndarray:
    """Burn a heatmap into an 8-bit grey image: RGB, heat shown where it passes the threshold.

    The same colours, opacity and threshold as the overlay on screen (:func:`heat_lut`); heat
    below the threshold, and unknown (NaN) heat, is left out so the anatomy stays readable.
    """
    low, high = levels
    unit = np.clip((np.nan_to_num(heatmap, nan=low) - low) / max(high - low, 1e-12), 0.0, 1.0)
    rgba = heat_lut(opacity, threshold)[np.rint(unit * 255).astype(np.uint8)].astype(np.float32)
    alpha = np.where(np.isfinite(heatmap), rgba[..., 3] / 255.0, 0.0)[..., None]
    base = np.repeat(grey[..., None], 3, axis=2).astype(np.float32) if grey.ndim == 2 else grey.astype(np.float32)
    return np.rint(base * (1 - alpha) + rgba[..., :3] * alpha).astype(np.uint8)
