"""The explanation methods the viewer and the command line offer, by name.

Each method is a generator function ``run(model, x, target, params, cancel, batch_size)`` and a
frozen dataclass of parameters whose defaults are the ones a first-time user should get.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from explain.engine import Update
from explain.integrated_gradients import IntegratedGradientsParams, integrated_gradients
from explain.occlusion import OcclusionParams, occlusion


@dataclass(frozen=True)
class Method:
    """A method's name on the command line, its title in the viewer, its parameters and code."""

    name: str
    title: str
    params: type
    run: Callable[..., Iterator[Update]]

    def make_params(self, values: dict[str, Any]) -> Any:
        """Parameters from a dict that may hold other methods' options too; None means default."""
        known = {f.name for f in fields(self.params)}
        return self.params(**{k: v for k, v in values.items() if k in known and v is not None})


METHODS: dict[str, Method] = {
    "occlusion": Method("occlusion", "Occlusion", OcclusionParams, occlusion),
    "ig": Method("ig", "Integrated gradients", IntegratedGradientsParams, integrated_gradients),
}
