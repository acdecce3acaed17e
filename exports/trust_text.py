"""How the trust figures are named for a reader, on screen and in exports.

No Qt here: the trust panel, the DICOM exports and the key-image report all say the same.
"""

from __future__ import annotations

from collections.abc import Mapping

from explain.trust import insertion_uninformative

#: How each figure is named for a reader, and which way is better.
FIGURE_TEXT = {
    "deletion_auc": ("Deletion area", "lower is better"),
    "insertion_auc": ("Insertion area", "higher is better"),
    "aopc": ("AOPC, map order", "higher is better"),
    "aopc_random": ("AOPC, random order", "the map should beat it"),
    "completeness_gap": ("Completeness gap", "near 0 is better"),
    "r2": ("Surrogate fit R²", "near 1 is better"),
    "randomized_rank_correlation": ("Map vs randomized model", "near 0 is better"),
}


def named_figures(figures: Mapping[str, float]) -> list[tuple[str, float, str]]:
    """``(name, value, hint)`` for each figure computed, in a fixed order; a caveat where a hint would mislead."""
    caveats = {"insertion_auc": insertion_caveat(figures)}
    return [(name, float(figures[key]), caveats.get(key) or hint)
            for key, (name, hint) in FIGURE_TEXT.items() if key in figures]


def insertion_caveat(figures: Mapping[str, float]) -> str:
    """The insertion area's hint where it says nothing (see :func:`~explain.trust.insertion_uninformative`);
    the verdict says why. Empty where it keeps its meaning."""
    return "meaningless on this image" if insertion_uninformative(figures) else ""
