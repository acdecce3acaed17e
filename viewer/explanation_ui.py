"""Explanations in the viewer: the panel, the background worker and the overlay, wired together.

The reader keeps reading while a heatmap builds up: the worker thread computes, this object
turns each (throttled) update into an overlay on the frame it was asked for, and anything that
changes what is on screen (another image, series or model) cancels the job first, so a map
never lands on an image it was not made for.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QFileDialog

from explain.devices import DeviceError, describe, pick_device
from explain.engine import Update
from explain.methods import METHODS
from explain.model_file import LoadedModel, ModelLoadError, load_model
from explain.preprocessing import to_image_grid
from viewer.dicom_image import FrameImage
from viewer.dicom_model_input import frame_model_input
from viewer.dicom_series import Frame
from viewer.explain_panel import ExplainPanel
from viewer.explain_worker import ExplainController, ExplainRequest
from viewer.heat_colours import heat_levels, heat_lut
from viewer.main_window import MainWindow

#: Wait this long after the last image change before scoring the new image for the target list.
PROBABILITY_DELAY_MS = 150
#: What the colour scale measures, per method, for the colour bar's caption.
SCALE_UNITS = {"occlusion": "drop in probability", "ig": "share of the probability"}


class ExplanationUi(QObject):
    """Adds the explanation dock to a main window and runs its explanations."""

    explanation_finished = Signal(object)  # Update

    def __init__(self, window: MainWindow, model_path: Path | None = None, device: str = "auto") -> None:
        super().__init__(window)
        self.window = window
        self.device_name = device
        self.panel = ExplainPanel()
        self.dock = window.add_dock("Explanation", "explain_dock", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.controller = ExplainController(self)
        self.model: LoadedModel | None = None
        self.levels: tuple[float, float] | None = None
        self.heat: np.ndarray | None = None
        self.started = 0.0
        self.frame: Frame | None = None
        self.last_final: Update | None = None
        self._probabilities_timer = QTimer(self)
        self._probabilities_timer.setSingleShot(True)
        self._probabilities_timer.setInterval(PROBABILITY_DELAY_MS)
        self._probabilities_timer.timeout.connect(self.update_probabilities)

        self.panel.explain_requested.connect(self.explain)
        self.panel.cancel_requested.connect(self.cancel)
        self.panel.open_model_requested.connect(self.choose_model)
        self.panel.overlay_changed.connect(self.redraw)
        self.panel.show_heat.toggled.connect(window.view.set_overlay_visible)
        window.view.overlay_toggled.connect(self._sync_checkbox)
        window.frame_shown.connect(self._on_frame_shown)
        self.controller.progressed.connect(self._on_progress)
        self.controller.finished.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.controller.idle.connect(lambda: self.panel.set_running(False))
        QApplication.instance().aboutToQuit.connect(self.controller.shutdown)
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
        self._clear_overlay()
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
            x = frame_model_input(image, self.model.card).to(self.model.device)
            probabilities = self.model.probabilities(x[None])[0].cpu().tolist()
        self.panel.set_probabilities(probabilities)

    # --- running

    def explain(self) -> None:
        """Snapshot everything the job needs and start it in the background."""
        image: FrameImage | None = self.window.view.image
        if self.model is None or image is None:
            self._say("Open an image and a model first")
            return
        try:
            params = self.panel.parameters()
            x = frame_model_input(image, self.model.card)
        except (ValueError, TypeError) as error:
            self._say(str(error))
            return
        method = self.panel.method_name()
        request = ExplainRequest(self.controller.next_generation(), method, params, self.model, x,
                                 self.panel.target_index())
        self.frame, self.started, self.levels, self.last_final = image.frame, time.perf_counter(), None, None
        self.panel.set_running(True)
        self.panel.set_progress(0.0, 0.0)
        self._say(f"{METHODS[method].title} running on {describe(self.model.device)}…")
        self.controller.start(request)

    def cancel(self) -> None:
        if self.controller.busy:
            self._say("Explanation cancelled")
        self.controller.cancel()
        self.panel.set_running(False)

    def _on_progress(self, update: Update) -> None:
        self.panel.set_progress(update.progress, time.perf_counter() - self.started)
        self._show(update)

    def _on_finished(self, update: Update) -> None:
        elapsed = time.perf_counter() - self.started
        self.panel.set_progress(1.0, elapsed)
        self._show(update)
        self.last_final = update
        score = update.figures.get("score")
        target = self.model.card.labels[self.panel.target_index()] if self.model else ""
        detail = f" (probability {score:.2f})" if score is not None else ""
        self._say(f"Done in {elapsed:.1f} s, {update.evaluations} model evaluations: {target}{detail}")
        self.panel.set_running(False)
        self.explanation_finished.emit(update)

    def _on_failed(self, message: str) -> None:
        self._say(message)
        self.panel.set_running(False)

    # --- overlay

    def _show(self, update: Update) -> None:
        """Put a map on the image; the colour scale only ever widens during one explanation."""
        image = self.window.view.image
        if image is None or image.frame is not self.frame:
            return
        self.heat = to_image_grid(update.heatmap, image.stored.shape[:2])
        top = heat_levels(update.heatmap)[1]
        self.levels = (0.0, max(top, self.levels[1] if self.levels else 0.0))
        self.redraw()

    def redraw(self) -> None:
        """Draw the current map with the panel's opacity and threshold."""
        if self.heat is None or self.levels is None:
            return
        lut = heat_lut(self.panel.opacity_value(), self.panel.threshold_value())
        self.window.view.show_heatmap(self.heat, self.levels, lut)
        self.window.view.set_overlay_visible(self.panel.show_heat.isChecked())
        self.panel.colour_bar.set_levels(self.levels, SCALE_UNITS.get(self.panel.method_name(), ""))

    def _clear_overlay(self) -> None:
        self.heat, self.levels, self.last_final = None, None, None
        self.window.view.overlay.clear()
        self.panel.colour_bar.set_levels(None)

    def _on_frame_shown(self, frame: Frame) -> None:
        """Another image is on show: whatever ran was for the old one."""
        if frame is not self.frame:
            if self.controller.busy:
                self.cancel()
            self._clear_overlay()
            self.frame = None
        self._probabilities_timer.start()

    def _sync_checkbox(self, visible: bool) -> None:
        self.panel.show_heat.blockSignals(True)
        self.panel.show_heat.setChecked(visible)
        self.panel.show_heat.blockSignals(False)

    def _say(self, text: str) -> None:
        self.panel.set_status(text)
        self.window.statusBar().showMessage(text, 8000)
