"""The model-randomization sanity check (Adebayo et al. 2018).

An explanation is only about the model if it changes when the model does. The check repeats the
same explanation with the top layers' learned weights replaced by random ones: a map that
barely changes (high rank correlation with the original) depends on the image, not on what the
model learned, and must not be read as the model's reasoning.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import torch

from explain.engine import CancelToken, Update
from explain.model_file import LoadedModel
from explain.trust import TrustUpdate

#: Above this rank correlation with the randomized model's map, a map fails the check.
FAIL_CORRELATION = 0.5


def layer_groups(module: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """Parameters grouped by layer, in the order the module declares them (input to output)."""
    groups: dict[str, list[torch.nn.Parameter]] = {}
    for name, parameter in module.named_parameters():
        groups.setdefault(name.rsplit(".", 1)[0], []).append(parameter)
    return list(groups.values())


def randomized_copy(model: LoadedModel, layers: int = 2, seed: int = 0) -> LoadedModel:
    """The same model with its top ``layers`` layers re-drawn at random, each at its own scale."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's pytree deprecation in deepcopy
        module = copy.deepcopy(model.module)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for group in layer_groups(module)[-layers:]:
            for parameter in group:
                scale = float(parameter.std()) if parameter.numel() > 1 else 1.0
                noise = torch.randn(parameter.shape, generator=generator) * max(scale, 1e-3)
                parameter.copy_(noise.to(parameter.device, parameter.dtype))
    return replace(model, module=module)


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman correlation of two maps over their pixels; a constant map correlates with nothing."""
    a, b = np.nan_to_num(first).ravel(), np.nan_to_num(second).ravel()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    from scipy.stats import spearmanr  # here, not at the top: scipy.stats costs a third of a second to import

    return float(spearmanr(a, b).statistic)


def sanity_check(
    model: LoadedModel,
    heatmap: np.ndarray,
    explain: Callable[[LoadedModel, CancelToken | None], Iterator[Update]],
    cancel: CancelToken | None = None,
    layers: int = 2,
    seed: int = 0,
) -> Iterator[TrustUpdate]:
    """Repeat an explanation on a randomized model and compare its map with ``heatmap``.

    ``explain(model, cancel)`` must run the same method with the same parameters; its progress
    is passed on. The final update's figures hold the rank correlation and ``sanity_passed``,
    1.0 when the map changed enough to depend on the learned weights.
    """
    last: Update | None = None
    for update in explain(randomized_copy(model, layers, seed), cancel):
        last = update
        if not update.final:
            yield TrustUpdate(update.progress, False, update.evaluations)
    if last is None or not last.final:
        return
    correlation = rank_correlation(heatmap, last.heatmap)
    figures = {"randomized_rank_correlation": correlation, "sanity_passed": float(abs(correlation) < FAIL_CORRELATION)}
    yield TrustUpdate(1.0, True, last.evaluations, figures)
