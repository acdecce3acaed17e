"""The explanation methods the viewer and the command line offer, by name.

Each method is a generator function ``run(model, x, target, params, cancel, batch_size)``, a
frozen dataclass of parameters whose defaults are the ones a first-time user should get, and
its baseline: what "removed" means for it, which the trust figures remove pixels to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch

from explain.baselines import baseline_image, broad_blur_sigma
from explain.engine import Update
from explain.integrated_gradients import RULES, IntegratedGradientsParams, integrated_gradients, path_start
from explain.lime import SEGMENTERS, LimeParams, lime, lime_baseline
from explain.occlusion import OcclusionParams, occlusion, occlusion_baseline
from explain.perturbation import MODES, PerturbationParams, perturbation, perturbation_baseline


@dataclass(frozen=True)
class Method:
    """A method's name on the command line, its title in the viewer, its parameters and code."""

    name: str
    title: str
    params: type
    run: Callable[..., Iterator[Update]]
    baseline: Callable[[torch.Tensor, Any], torch.Tensor]

    def make_params(self, values: dict[str, Any]) -> Any:
        """Parameters from a dict that may hold other methods' options too; None means default."""
        known = {f.name for f in fields(self.params)}
        return self.params(**{k: v for k, v in values.items() if k in known and v is not None})


def blurred(x: torch.Tensor, _params: Any = None) -> torch.Tensor:
    """A broad blur of the input: removal for methods without a baseline of their own."""
    return baseline_image(x, "blur", blur_sigma=broad_blur_sigma(x))


METHODS: dict[str, Method] = {
    "occlusion": Method("occlusion", "Occlusion", OcclusionParams, occlusion,
                        lambda x, p: occlusion_baseline(x, p.baseline, p.window)),
    "ig": Method("ig", "Integrated gradients", IntegratedGradientsParams, integrated_gradients, path_start),
    "lime": Method("lime", "LIME (superpixels)", LimeParams, lime, lime_baseline),
    "perturbation": Method("perturbation", "Meaningful perturbation", PerturbationParams, perturbation,
                           perturbation_baseline),
}

#: Parameters that take a value or the name of a derived image, parsed alike everywhere.
IMAGE_OR_VALUE = ("baseline", "fill")
#: Parameters with a fixed set of values, for menus and the command line's checks.
CHOICES: dict[str, tuple[str, ...]] = {"rule": RULES, "segmentation": tuple(SEGMENTERS), "mode": MODES}
