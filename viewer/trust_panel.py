"""The trust panel: beside a finished heatmap, figures that say how far to trust it.

A verdict in plain words comes first, then the deletion and insertion curves (a faithful map
makes the model's probability fall fast as highlighted pixels are removed, and rise fast as
they are revealed), then the numbers, each with the direction that is better.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from exports.trust_text import named_figures

DELETION_COLOUR = (240, 120, 60)
INSERTION_COLOUR = (90, 170, 240)


def figure_rows(figures: Mapping[str, float]) -> str:
    """The figures as a small HTML table, in a fixed order, skipping those not computed."""
    rows = [f"<tr><td>{name}</td><td align='right'><b>{value:.3f}</b></td><td><i>{hint}</i></td></tr>"
            for name, value, hint in named_figures(figures)]
    return "<table cellspacing='4'>" + "".join(rows) + "</table>"


class TrustPanel(QWidget):
    """Figures, curves and verdict for the explanation on show; a button for the sanity check."""

    sanity_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.verdict = QLabel("Figures appear here once an explanation is finished.")
        self.verdict.setWordWrap(True)
        self.plot = pg.PlotWidget(background=None)
        self.plot.setFixedHeight(180)
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "share of pixels, most highlighted first")
        self.plot.setLabel("left", "probability")
        self.plot.setYRange(0, 1, padding=0.02)
        self.plot.addLegend(offset=(-5, 5))
        self.deletion = self.plot.plot(pen=pg.mkPen(DELETION_COLOUR, width=2), name="removed")
        self.insertion = self.plot.plot(pen=pg.mkPen(INSERTION_COLOUR, width=2), name="revealed")
        self.figures = QLabel("")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)
        self.sanity_button = QPushButton("Run sanity check (randomized model)")
        self.sanity_button.setToolTip("Repeat the explanation with the model's top layers randomized: "
                                      "a trustworthy map changes completely")
        self.sanity_button.clicked.connect(self.sanity_requested)
        self.sanity_button.setEnabled(False)
        self.sanity = QLabel("")
        self.sanity.setWordWrap(True)
        layout = QVBoxLayout(self)
        for widget in (self.verdict, self.plot, self.figures, self.progress, self.sanity_button, self.sanity):
            layout.addWidget(widget)
        layout.addStretch(1)

    def clear(self) -> None:
        self.verdict.setText("Figures appear here once an explanation is finished.")
        self.deletion.setData([], [])
        self.insertion.setData([], [])
        self.figures.setText("")
        self.sanity.setText("")
        self.progress.setVisible(False)
        self.sanity_button.setEnabled(False)

    def set_progress(self, progress: float, what: str) -> None:
        self.progress.setVisible(progress < 1.0)
        self.progress.setValue(round(progress * 1000))
        self.progress.setFormat(f"{what} %p%")

    def show_figures(self, verdict: str, figures: Mapping[str, float], curves: Mapping[str, np.ndarray]) -> None:
        self.progress.setVisible(False)
        self.verdict.setText(f"<b>{verdict}</b>")
        self.deletion.setData(curves["fraction"], curves["deletion"])
        self.insertion.setData(curves["fraction"], curves["insertion"])
        self.figures.setText(figure_rows(figures))
        self.sanity_button.setEnabled(True)

    def show_sanity(self, figures: Mapping[str, float]) -> None:
        self.progress.setVisible(False)
        correlation = figures["randomized_rank_correlation"]
        if figures["sanity_passed"]:
            text = (f"Sanity check passed: with the top layers randomized the map changes "
                    f"(rank correlation {correlation:.2f}), so it depends on what the model learned.")
        else:
            text = (f"<b>Sanity check failed:</b> with the top layers randomized the map barely changes "
                    f"(rank correlation {correlation:.2f}); it shows the image, not the model's reasoning.")
        self.sanity.setText(text)
