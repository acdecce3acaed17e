"""A finished explanation of one image: what File > Export and the command line's outputs are made from.

The viewer hands one of these to its export actions through a signal whenever a stage of the
session finishes; the command line writes its files from one. Nothing here changes after it is
made, so an export never mixes one explanation's map with another's figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dicom.image import FrameImage
from dicom.pixels import Voi
from dicom.series import Frame
from explain.method import Display
from explain.preprocessing import to_image_grid
from explain.session import Outcome
from exports.heat_colours import displayed

if TYPE_CHECKING:
    from exports.dicom_objects import ExportedExplanation


@dataclass(frozen=True, eq=False)
class Explained:
    """An image and the outcome of its explanation session, its final map present."""

    image: FrameImage
    outcome: Outcome

    def __post_init__(self) -> None:
        if self.outcome.final is None:
            raise ValueError("an explanation is not finished before its final map")

    @property
    def frame(self) -> Frame:
        return self.image.frame

    @property
    def figures(self) -> Mapping[str, float]:
        """Every figure but the score, which the exports state on its own."""
        return {key: value for key, value in self.outcome.figures.items() if key != "score"}

    def heatmap(self) -> np.ndarray:
        """The map on the image's own pixel grid."""
        return to_image_grid(self.outcome.final.heatmap, self.image.stored.shape[:2])

    @property
    def display(self) -> Display:
        """How the viewer first shows this method's map; the command line's pictures follow it."""
        return self.outcome.request.settings.method.display

    def shown(self) -> np.ndarray:
        """The map as the viewer first draws it (:attr:`display`), on the image's own pixel grid."""
        return to_image_grid(displayed(self.outcome.final.heatmap, self.display), self.image.stored.shape[:2])

    def for_export(self, voi: Voi | None = None, invert: bool | None = None, opacity: float = 0.6,
                   threshold: float = 0.1, display: Display | None = None) -> ExportedExplanation:
        """The explanation as the DICOM and report writers take it, shown as the reader has it on screen.

        ``display`` changes only the burned-in picture; the Parametric Map keeps the raw map.

        highdicom is imported here, when an export is made: an ``npz`` run has no need to wait for it.
        """
        from exports.dicom_objects import explanation_to_export

        settings = self.outcome.request.settings
        return explanation_to_export(
            self.image, self.outcome.final.heatmap, method=settings.method.title, model_name=settings.model.card.name,
            target=settings.label, score=self.outcome.score, units=settings.units, figures=self.figures,
            verdict=self.outcome.verdict, voi=voi, invert=invert, opacity=opacity, threshold=threshold,
            display=display or self.display)
