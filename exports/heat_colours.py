"""The heatmap's colours, shared by the overlay on screen and the images written to disk.

No Qt here: the command line writes the same picture the viewer shows. What is drawn is a display
copy of the map (:func:`displayed`): one of its signs, optionally smoothed. The map itself, and
every file that stores its values, stay raw.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import gaussian_filter

if TYPE_CHECKING:
    from explain.method import Display

COLOUR_MAP_FILE = Path(__file__).resolve().parents[1] / "resources" / "colormaps" / "inferno.csv"
#: The signed scale's two halves, 8-bit RGB: against the target from most (cyan) to least (deep blue),
#: then for it from least (deep red) to most (yellow). Brighter means more either way, as on the heat
#: scale, and no colour is pale, so that weak evidence does not read as grey anatomy; zero, between
#: the halves, is below any threshold and drawn transparent.
AGAINST = ((80, 230, 255), (30, 60, 200))
FOR = ((200, 30, 30), (255, 230, 50))


@cache
def heat_table() -> np.ndarray:
    """The colour map as 256 rows of 8-bit RGB, dark (little) to bright (much)."""
    rows = np.loadtxt(COLOUR_MAP_FILE, delimiter=",", comments=";")
    return np.rint(rows * 255).astype(np.uint8)


@cache
def diverging_table() -> np.ndarray:
    """The signed scale as 256 rows of 8-bit RGB: 128 against the target, then 128 for it."""
    halves = [np.linspace(start, end, 128) for start, end in (AGAINST, FOR)]
    return np.rint(np.vstack(halves)).astype(np.uint8)


def colour_table(show: str = "positive") -> np.ndarray:
    """The colour map a display choice draws with: diverging for both signs, the heat scale for one."""
    return diverging_table() if show == "signed" else heat_table()


def displayed(heatmap: np.ndarray, display: Display) -> np.ndarray:
    """The copy of a map that the overlay draws: the chosen sign, then Gaussian smoothing.

    The sign is chosen first, so that speckle of one sign adds up rather than cancelling against
    its neighbours of the other. The map passed in is never changed.
    """
    heat = np.asarray(heatmap, dtype=np.float32)
    if display.show == "positive":
        heat = np.maximum(heat, 0.0)  # NaN (not yet known) stays NaN
    elif display.show == "absolute":
        heat = np.abs(heat)
    return smoothed(heat, display.smooth)


def smoothed(heatmap: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing, ``sigma`` in the map's pixels, that leaves unknown (NaN) pixels unknown.

    Known pixels are averaged over their known neighbours only, so a partial map's unknown
    part neither darkens nor spreads into the part already computed.
    """
    if sigma <= 0:
        return heatmap
    known = np.isfinite(heatmap)
    values = gaussian_filter(np.where(known, heatmap, 0.0).astype(np.float32), sigma, mode="nearest")
    weights = gaussian_filter(known.astype(np.float32), sigma, mode="nearest")
    return np.where(known, values / np.maximum(weights, 1e-6), np.nan).astype(np.float32)


def heat_top(heatmap: np.ndarray, show: str = "positive") -> float:
    """How far the colour scale must reach: the largest value, or the largest magnitude when signed; 0 if none."""
    finite = heatmap[np.isfinite(heatmap)]
    if not finite.size:
        return 0.0
    return float(np.abs(finite).max() if show == "signed" else finite.max())


def scale_levels(top: float, show: str = "positive") -> tuple[float, float]:
    """The colour scale up to ``top``: symmetric about zero when signed, so that zero is the middle colour,
    and from zero otherwise, so that "no effect" is transparent whatever the method's scale.

    Nothing above zero known gives a placeholder top of 1.
    """
    top = top if top > 0 else 1.0
    return (-top, top) if show == "signed" else (0.0, top)


def heat_levels(heatmap: np.ndarray, show: str = "positive") -> tuple[float, float]:
    """The colour scale for a map as shown: zero up to its largest value, or plus and minus its largest magnitude."""
    return scale_levels(heat_top(heatmap, show), show)


def heat_lut(opacity: float, threshold: float, show: str = "positive") -> np.ndarray:
    """RGBA table for the overlay: the colour map, transparent below the threshold.

    ``threshold`` is a fraction of the colour scale's reach, ``opacity`` the alpha of what passes
    it; a signed map passes it by its magnitude, so weak evidence either way stays transparent.
    """
    reach = np.abs(np.linspace(-1.0, 1.0, 256)) if show == "signed" else np.linspace(0.0, 1.0, 256)
    alpha = np.where(reach >= threshold, round(255 * opacity), 0).astype(np.uint8)
    return np.column_stack([colour_table(show), alpha])


def blend(grey: np.ndarray, heatmap: np.ndarray, levels: tuple[float, float], opacity: float = 0.6,
          threshold: float = 0.1, show: str = "positive") -> np.ndarray:
    """Burn a heatmap into an 8-bit grey image: RGB, heat shown where it passes the threshold.

    The same colours, opacity and threshold as the overlay on screen (:func:`heat_lut`); heat
    below the threshold, and unknown (NaN) heat, is left out so the anatomy stays readable.
    """
    low, high = levels
    unit = np.clip((np.nan_to_num(heatmap, nan=low) - low) / max(high - low, 1e-12), 0.0, 1.0)
    rgba = heat_lut(opacity, threshold, show)[np.rint(unit * 255).astype(np.uint8)].astype(np.float32)
    alpha = np.where(np.isfinite(heatmap), rgba[..., 3] / 255.0, 0.0)[..., None]
    base = np.repeat(grey[..., None], 3, axis=2).astype(np.float32) if grey.ndim == 2 else grey.astype(np.float32)
    return np.rint(base * (1 - alpha) + rgba[..., :3] * alpha).astype(np.uint8)
