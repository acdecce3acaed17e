"""What an explanation method is, as everything else sees it: one record per method.

A method lives in one file of its own, which ends with its :class:`Method`, and has one entry in
:mod:`explain.methods`. The command line, the viewer, the trust figures and the exports ask the
record, never the method's name, so a new method needs nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from explain.engine import CancelToken, Update
from explain.model_file import LoadedModel

#: ``run(model, x, target, params, cancel=None, batch_size=None)``: the method's updates.
Run = Callable[..., Iterator[Update]]


@dataclass(frozen=True)
class Outlines:
    """An extra layer a method draws over the image: the outlines of the regions it worked on.

    ``labels(x, params)`` gives a region number per model-input pixel; ``title`` names the
    regions for the reader ("superpixels").
    """

    title: str
    labels: Callable[[torch.Tensor, Any], np.ndarray]


#: What the overlay may show of a map: both signs on a diverging scale, or one magnitude on the heat scale.
SHOWS = ("signed", "positive", "absolute")


@dataclass(frozen=True)
class Display:
    """How a method's map is first drawn: which of its signs (one of :data:`SHOWS`), and how much
    Gaussian smoothing, ``smooth`` being the sigma in pixels of the map's own grid (0 for none).

    Display only: the map, its ``.npz`` and its Parametric Map keep the method's raw values.
    Gradients are signed and speckled pixel by pixel, so their magnitude is shown smoothed;
    maps that measure one thing per region (occlusion, Grad-CAM) are shown as they are.
    """

    show: str = "positive"
    smooth: float = 0.0

    def __post_init__(self) -> None:
        if self.show not in SHOWS:
            raise ValueError(f"show must be one of {', '.join(SHOWS)}, not {self.show!r}")
        if not self.smooth >= 0:
            raise ValueError(f"smoothing must be zero or more pixels, not {self.smooth}")


@dataclass(frozen=True)
class Method:
    """One explanation method.

    ``params`` is a frozen dataclass whose defaults are what a first-time user should get;
    ``run`` its generator of updates; ``baseline(x, params)`` what "removed" means for it, to
    which the trust figures remove pixels. ``units`` says what the map measures, for the colour
    bar and the exports. ``choices`` lists parameters with a fixed set of values, and
    ``image_or_value`` those that take a number or the name of a derived image (``mean``,
    ``blur``); both are parsed alike on the command line and in the viewer. ``display`` is how
    the viewer first draws the map, which the reader may change. ``fixed_score`` names what a
    method explains whatever the score chosen (Grad-CAM always the log-odds); None for one that
    explains the chosen score (:attr:`explain.model_file.LoadedModel.score`). ``hints`` says in
    a line what each parameter does, for the viewer's tooltips: a name alone ("Precision") does
    not say that it only matters for an adaptive run.
    """

    name: str
    title: str
    params: type
    run: Run
    baseline: Callable[[torch.Tensor, Any], torch.Tensor]
    units: str
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    image_or_value: tuple[str, ...] = ()
    outlines: Outlines | None = None
    display: Display = Display()
    fixed_score: str | None = None
    hints: Mapping[str, str] = field(default_factory=dict)

    def units_for(self, score: str) -> str:
        """The units of a map of ``score``: a method that follows the setting names the probability in
        its units, and a map of the log-odds measures the same thing of the log-odds."""
        return self.units if self.fixed_score else self.units.replace("probability", score)

    def make_params(self, values: Mapping[str, Any]) -> Any:
        """Parameters from a mapping that may hold other methods' options too; None means default."""
        known = {f.name for f in fields(self.params)}
        return self.params(**{k: v for k, v in values.items() if k in known and v is not None})

    def explain(self, model: LoadedModel, x: torch.Tensor, target: int, params: Any,
                cancel: CancelToken | None = None, batch_size: int | None = None) -> Iterator[Update]:
        """The method's updates for one input, to the final one unless cancelled."""
        return self.run(model, x, target, params, cancel=cancel, batch_size=batch_size)
