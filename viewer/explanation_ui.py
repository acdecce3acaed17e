"""Explanations in the viewer: the panels, the background worker and the overlay, wired together.

The reader keeps reading while a heatmap builds up: the worker thread computes, this object
turns each (throttled) update into an overlay on the frame it was asked for, and anything that
changes what is on screen (another image, series or model) cancels the job first, so a map
never lands on an image it was not made for. Once a map is final, its trust figures follow in
the background the same way, and the sanity check runs when asked for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QFileDialog, QFrame, QScrollArea, QWidget
from skimage.segmentation import find_boundaries

from dicom.image import FrameImage
from dicom.model_input import model_unit_image
from dicom.series import Frame
from explain.devices import DeviceError, describe, pick_device
from explain.engine import Update
from explain.lime import superpixels
from explain.methods import METHODS
from explain.model_file import LoadedModel, ModelLoadError, load_model
from explain.preprocessing import to_model_input
from explain.sanity import sanity_check
from explain.trust import TrustUpdate, trust_figures, verdict
from exports.heat_colours import heat_levels, heat_lut
from exports.trust_text import SCALE_UNITS
from viewer.explain_panel import ExplainPanel
from viewer.explain_worker import ExplainController, Job
from viewer.export_actions import ExportActions
from viewer.main_window import MainWindow
from viewer.trust_panel import TrustPanel

#: Superpixel outlines: white, half transparent, visible on both lung and bone.
SEGMENT_OUTLINE = (255, 255, 255, 140)
#: Wait this long after the last image change before scoring the new image for the target list.
PROBABILITY_DELAY_MS = 150


def precision(model: LoadedModel) -> str:
    """Says so when a map is made in fast mode, so that nobody takes it for the exact one."""
    if not model.fast:
        return ""
    return ", fast mode (bfloat16)" if model.device.type == "cpu" else ", fast mode (float16)"


def scrolling(panel: QWidget) -> QScrollArea:
    """A panel that scrolls rather than squeezes when its dock is short."""
    area = QScrollArea()
    area.setWidget(panel)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    return area


@dataclass(frozen=True, eq=False)
class Explanation:
    """One explanation as asked for: enough to repeat it (sanity check) or test it (trust)."""

    method: str
    params: Any
    model: LoadedModel
    model_input: torch.Tensor
    target: int
    frame: Frame

    def run(self, model: LoadedModel, cancel: Any) -> Any:
        """The method's generator, on this or another model (the sanity check's randomized one)."""
        return METHODS[self.method].run(model, self.model_input, self.target, self.params, cancel=cancel)

    @property
    def label(self) -> str:
        return self.model.card.labels[self.target]


class ExplanationUi(QObject):
    """Adds the explanation and trust docks to a main window and runs their jobs."""

    explanation_finished = Signal(object)  # Update
    trust_finished = Signal(object)  # TrustUpdate

    def __init__(self, window: MainWindow, model_path: Path | None = None, device: str = "auto") -> None:
        super().__init__(window)
        self.window = window
        self.device_name = device
        self.panel = ExplainPanel()
        self.trust = TrustPanel()
        right = Qt.DockWidgetArea.RightDockWidgetArea
        self.dock = window.add_dock("Explanation", "explain_dock", scrolling(self.panel), right)
        self.trust_dock = window.add_dock("Trust", "trust_dock", scrolling(self.trust), right)
        window.tabifyDockWidget(window.tags_dock, self.dock)
        self.dock.raise_()
        self.controller = ExplainController(self)
        self.segment_outlines = pg.ImageItem()
        self.segment_outlines.setZValue(2)
        window.view.box.addItem(self.segment_outlines, ignoreBounds=True)
        self.model: LoadedModel | None = None
        self.current: Explanation | None = None
        self.final: Update | None = None
        self.levels: tuple[float, float] | None = None
        self.heat: np.ndarray | None = None
        self.started = 0.0
        self._probabilities_timer = QTimer(self)
        self._probabilities_timer.setSingleShot(True)
        self._probabilities_timer.setInterval(PROBABILITY_DELAY_MS)
        self._probabilities_timer.timeout.connect(self.update_probabilities)

        self.panel.explain_requested.connect(self.explain)
        self.panel.cancel_requested.connect(self.cancel)
        self.panel.open_model_requested.connect(self.choose_model)
        self.panel.overlay_changed.connect(self.redraw)
        self.panel.show_heat.toggled.connect(window.view.set_overlay_visible)
        self.trust.sanity_requested.connect(self.run_sanity_check)
        window.view.overlay_toggled.connect(self._sync_checkbox)
        window.frame_shown.connect(self._on_frame_shown)
        self.controller.progressed.connect(self._on_progress)
        self.controller.finished.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.controller.idle.connect(lambda: self.panel.set_running(False))
        QApplication.instance().aboutToQuit.connect(self.controller.shutdown)
        self.exports = ExportActions(window, self)
        if model_path is not None:
            self.open_model(model_path)

    # --- model

    def open_model(self, path: Path) -> bool:
        """Load a model (checked for unsafe content first); on failure keep the current one."""
        try:
            device = pick_device(self.device_name)
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                model = load_model(Path(path), device)
            finally:
                QApplication.restoreOverrideCursor()
        except (ModelLoadError, DeviceError) as error:
            self._say(f"Model not loaded: {error}")
            return False
        self.cancel()
        self.model = model
        self.panel.set_model(model.card, f"{Path(path).name} on {describe(device)}")
        self._forget_explanation()
        self.update_probabilities()
        self._say(f"Model {model.card.name} ready")
        return True

    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open model", "", "torch.export models (*.pt2)")
        if path:
            self.open_model(Path(path))

    def update_probabilities(self) -> None:
        """Score the image on show, so the target list says what the model thinks of it."""
        image = self.window.view.image
        if self.model is None or image is None or image.is_colour:
            self.panel.set_probabilities(None)
            return
        with torch.inference_mode():
            x = to_model_input(model_unit_image(image, self.model.card.window), self.model.card.input).to(self.model.device)
            probabilities = self.model.probabilities(x[None])[0].cpu().tolist()
        self.panel.set_probabilities(probabilities)

    # --- jobs

    def explain(self) -> None:
        """Snapshot everything the job needs and start it in the background."""
        image: FrameImage | None = self.window.view.image
        if self.model is None or image is None:
            self._say("Open an image and a model first")
            return
        try:
            params = self.panel.parameters()
            x = to_model_input(model_unit_image(image, self.model.card.window), self.model.card.input)
        except (ValueError, TypeError) as error:
            self._say(str(error))
            return
        model = replace(self.model, fast=self.panel.fast.isChecked())
        explanation = Explanation(self.panel.method_name(), params, model, x, self.panel.target_index(), image.frame)
        self._forget_explanation()
        self.current, self.started = explanation, time.perf_counter()
        self.panel.set_running(True)
        self.panel.set_progress(0.0, 0.0)
        self._say(f"{METHODS[explanation.method].title} running on {describe(self.model.device)}{precision(model)}…")
        self.controller.start(Job(self.controller.next_generation(), "explanation",
                                  lambda cancel: explanation.run(explanation.model, cancel)))

    def _start_trust(self, explanation: Explanation, final: Update) -> None:
        """Figures for the finished map, against the method's own baseline."""
        removed = METHODS[explanation.method].baseline(explanation.model_input, explanation.params)
        exact = replace(explanation.model, fast=False)  # the figures judge the map with the exact model
        self.controller.start(Job(self.controller.next_generation(), "trust", lambda cancel: trust_figures(
            exact, explanation.model_input, explanation.target, final.heatmap, removed, cancel=cancel)))

    def run_sanity_check(self) -> None:
        """Repeat the explanation on a randomized model; costs as much as the explanation.

        The button is live only once the trust figures are in, so the one job that may still be
        winding down then is theirs, already done: it is superseded, not waited for (waiting
        made a quick click do nothing).
        """
        explanation, final = self.current, self.final
        if explanation is None or final is None:
            return
        self.trust.sanity_button.setEnabled(False)
        self.panel.set_running(True)
        self.controller.start(Job(self.controller.next_generation(), "sanity", lambda cancel: sanity_check(
            explanation.model, final.heatmap, explanation.run, cancel)))

    def cancel(self) -> None:
        if self.controller.busy:
            self._say("Cancelled")
        self.controller.cancel()
        self.panel.set_running(False)

    def _on_progress(self, kind: str, update: Update | TrustUpdate) -> None:
        if kind == "explanation":
            self.panel.set_progress(update.progress, time.perf_counter() - self.started)
            self._show(update)
        else:
            self.trust.set_progress(update.progress, "Sanity check" if kind == "sanity" else "Trust figures")

    def _on_finished(self, kind: str, update: Update | TrustUpdate) -> None:
        explanation = self.current
        if explanation is None:
            return
        if kind == "explanation":
            self._finish_explanation(explanation, update)
        elif kind == "trust":
            figures = {**self.final.figures, **update.figures}
            self.trust.show_figures(verdict(figures, explanation.label), figures, update.curves)
            self.panel.set_running(False)
            self.trust_finished.emit(update)
        else:
            self.trust.show_sanity(update.figures)
            self.panel.set_running(False)

    def _finish_explanation(self, explanation: Explanation, update: Update) -> None:
        elapsed = time.perf_counter() - self.started
        self.panel.set_progress(1.0, elapsed)
        self._show(update)
        self.final = update
        score = update.figures.get("score")
        detail = f" (probability {score:.2f})" if score is not None else ""
        self._say(f"Done in {elapsed:.1f} s, {update.evaluations} model evaluations{precision(explanation.model)}: "
                  f"{explanation.label}{detail}")
        self.explanation_finished.emit(update)
        self.trust.set_progress(0.0, "Trust figures")
        self._start_trust(explanation, update)

    def _on_failed(self, message: str) -> None:
        self._say(message)
        self.panel.set_running(False)

    # --- overlay

    def _show(self, update: Update) -> None:
        """Put a map on the image; the colour scale only ever widens during one explanation.

        The map stays on the model's grid and the view stretches it over the image, which is
        the inverse of the model's resize: resampling it to a large radiograph's own pixels on
        the GUI thread for every partial update would cost the reader tens of milliseconds.
        """
        image = self.window.view.image
        if image is None or self.current is None or image.frame is not self.current.frame:
            return
        self.heat = update.heatmap
        top = heat_levels(update.heatmap)[1]
        self.levels = (0.0, max(top, self.levels[1] if self.levels else 0.0))
        self.redraw()

    def redraw(self) -> None:
        """Draw the current map with the panel's opacity and threshold."""
        self.draw_segments()
        if self.heat is None or self.levels is None:
            return
        lut = heat_lut(self.panel.opacity_value(), self.panel.threshold_value())
        self.window.view.show_heatmap(self.heat, self.levels, lut)
        self.window.view.set_overlay_visible(self.panel.show_heat.isChecked())
        unit = SCALE_UNITS.get(self.current.method, "") if self.current else ""
        if self.current and self.current.model.fast:
            unit += " (fast mode)"
        self.panel.colour_bar.set_levels(self.levels, unit)

    def draw_segments(self) -> None:
        """Outline LIME's superpixels on the image's own pixels, when asked and relevant."""
        explanation, image = self.current, self.window.view.image
        wanted = self.panel.show_segments.isChecked() and explanation is not None and explanation.method == "lime"
        if not wanted or image is None or image.frame is not explanation.frame:
            self.segment_outlines.clear()
            return
        labels = superpixels(explanation.model_input, explanation.params)
        rows, columns = image.stored.shape[:2]
        on_image = labels[np.arange(rows) * labels.shape[0] // rows][:, np.arange(columns) * labels.shape[1] // columns]
        outline = np.zeros((rows, columns, 4), dtype=np.uint8)
        outline[find_boundaries(on_image, mode="inner")] = SEGMENT_OUTLINE
        self.segment_outlines.setImage(outline, autoLevels=False, levels=(0, 255))
        self.segment_outlines.setRect(self.window.view.image_rect())

    def _forget_explanation(self) -> None:
        """Nothing explained on screen: no overlay, no figures."""
        self.current, self.final, self.heat, self.levels = None, None, None, None
        self.window.view.overlay.clear()
        self.segment_outlines.clear()
        self.panel.colour_bar.set_levels(None)
        self.trust.clear()

    def _on_frame_shown(self, frame: Frame) -> None:
        """Another image is on show: whatever ran or was shown was for the old one."""
        if self.current is not None and frame is not self.current.frame:
            self.controller.next_generation()
            self.panel.set_running(False)
            self._forget_explanation()
        self._probabilities_timer.start()

    def _sync_checkbox(self, visible: bool) -> None:
        self.panel.show_heat.blockSignals(True)
        self.panel.show_heat.setChecked(visible)
        self.panel.show_heat.blockSignals(False)

    def _say(self, text: str) -> None:
        self.panel.set_status(text)
        self.window.statusBar().showMessage(text, 8000)
