"""Explanations in the viewer: the panels, the background workers and the overlay, wired together.

The reader keeps reading while a heatmap builds up: a worker thread runs the explanation
session (:mod:`explain.session`, the same one the command line runs), this object turns each
(throttled) step into an overlay on the frame it was asked for, and anything that changes what
is on screen (another image, series or model) cancels the job first, so a map never lands on an
image it was not made for. The trust figures follow the map within the same session; the sanity
check runs when asked for. The model never runs on the GUI thread: the label probabilities of
the image on show are scored by a second worker, the latest image winning.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QFileDialog, QFrame, QScrollArea, QVBoxLayout, QWidget
from skimage.segmentation import find_boundaries

from dicom.image import FrameImage
from dicom.model_input import model_unit_image
from dicom.series import Frame
from explain.devices import DeviceError, describe, pick_device
from explain.engine import CancelToken, Update
from explain.expected_images import check_image
from explain.method import Display, Method
from explain.model_file import LoadedModel, ModelLoadError, load_model
from explain.preprocessing import to_model_input
from explain.session import ExplanationRequest, Outcome, Step, probability_steps, run_session, sanity_steps
from explain.trust import TrustUpdate
from exports.explained import Explained
from exports.heat_colours import displayed, heat_lut, heat_top, scale_levels
from viewer import bindings
from viewer.explain_panel import ExplainPanel
from viewer.explain_worker import ExplainController, Job
from viewer.export_actions import ExportActions
from viewer.main_window import MainWindow
from viewer.trust_panel import TrustPanel

#: Superpixel outlines: white, half transparent, visible on both lung and bone.
SEGMENT_OUTLINE = (255, 255, 255, 140)
#: The mark on a map that a cancel stopped: amber on a dark band, legible on lung and on bone.
PARTIAL_COLOUR = (255, 190, 40)
PARTIAL_FILL = (0, 0, 0, 190)
#: Wait this long after the last image change before scoring the new image for the target list.
PROBABILITY_DELAY_MS = 150
#: What the colour bar adds to the method's units for each display choice.
SCALE_NOTES = {"signed": ", blue against, red for", "positive": "", "absolute": ", either sign"}


def precision(model: LoadedModel) -> str:
    """Says so when a map is made in fast mode, so that nobody takes it for the exact one."""
    if not model.fast:
        return ""
    return ", fast mode (bfloat16)" if model.device.type == "cpu" else ", fast mode (float16)"


def settle_long_lived_objects() -> None:
    """Collect once, then keep what survives out of later full garbage collections.

    A loaded model leaves hundreds of thousands of long-lived Python objects; a full collection
    then holds the GIL for 100-300 ms and stalls the GUI thread whichever thread triggers it.
    Frozen objects are skipped. Unfreezing first lets a replaced model be collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def scale_text(units: str, display: Display, fast: bool) -> str:
    """What the colour bar's numbers are: the method's units, as drawn, so a smoothed value is not read as raw."""
    smoothing = f", smoothed {display.smooth:g}\N{NO-BREAK SPACE}px" if display.smooth > 0 else ""
    return f"{units}{SCALE_NOTES[display.show]}{smoothing}{' (fast mode)' if fast else ''}"


def scrolling(panel: QWidget) -> QScrollArea:
    """A panel that scrolls rather than squeezes when its dock is short."""
    area = QScrollArea()
    area.setWidget(panel)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    return area


def with_fixed_bar(panel: ExplainPanel) -> QWidget:
    """The panel scrolling, with its Explain/Cancel bar fixed at the bottom where it never moves."""
    container = QWidget()
    layout = QVBoxLayout(container)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(0)
    layout.addWidget(scrolling(panel), 1)
    layout.addWidget(panel.run_bar)
    return container


@dataclass(frozen=True, eq=False)
class Explanation:
    """One explanation as asked for: the session's request and the image it was made from."""

    request: ExplanationRequest
    image: FrameImage

    @property
    def frame(self) -> Frame:
        return self.image.frame

    @property
    def model(self) -> LoadedModel:
        return self.request.settings.model

    @property
    def method(self) -> Method:
        return self.request.settings.method


class ExplanationUi(QObject):
    """Adds the explanation and trust docks to a main window and runs their jobs.

    ``explanation_finished`` carries the final map's update and ``trust_finished`` the trust
    figures' update; ``explained`` carries the finished explanation as one immutable
    :class:`~exports.explained.Explained` each time a stage completes, and None when the
    explanation on screen is forgotten.
    """

    explanation_finished = Signal(object)  # Update
    trust_finished = Signal(object)  # TrustUpdate
    explained = Signal(object)  # Explained | None
    model_loaded = Signal(bool)  # a background load ended: whether its model is now in use
    _model_arrived = Signal(int, object, object)  # load number, path, LoadedModel or the error

    def __init__(self, window: MainWindow, model_path: Path | None = None, device: str = "auto") -> None:
        super().__init__(window)
        self.window = window
        self.device_name = device
        self.panel = ExplainPanel()
        self.trust = TrustPanel()
        right = Qt.DockWidgetArea.RightDockWidgetArea
        self.dock = window.add_dock("Explanation", "explain_dock", with_fixed_bar(self.panel), right,
                                    tab_with=window.tags_dock)
        self.trust_dock = window.add_dock("Trust", "trust_dock", scrolling(self.trust), right)
        self.dock.raise_()
        self.key_actions = self._make_actions()
        self.load_error: str | None = None
        self.loading = False
        self.adopted: bool | None = None  # whether the latest load that ended put its model in use
        self._loads = 0  # numbers the loads, so only the latest is adopted
        self._loaders: list[threading.Thread] = []
        self._model_text = ""  # what the panel said of the model in use before a load replaced it with LOADING
        self.controller = ExplainController(self)
        self.scoring = ExplainController(self)
        self.segment_outlines = pg.ImageItem()
        self.segment_outlines.setZValue(2)
        window.view.box.addItem(self.segment_outlines, ignoreBounds=True)
        # On the image itself, so a picture of the view carries it too.
        self.partial_label = pg.TextItem(color=PARTIAL_COLOUR, fill=pg.mkBrush(*PARTIAL_FILL), anchor=(0.5, 0.0))
        self.partial_label.setZValue(3)
        self.partial_label.hide()
        window.view.box.addItem(self.partial_label, ignoreBounds=True)
        self.cancelled_at: float | None = None  # progress of a map a cancel stopped, None for any other
        self.model: LoadedModel | None = None
        self.current: Explanation | None = None
        self.outcome: Outcome | None = None
        self.levels: tuple[float, float] | None = None
        self.known_top: float | None = None
        self._last_frame: Frame | None = None
        self.heat: np.ndarray | None = None
        self.display: Display = self.panel.display()
        self.shown_heat: np.ndarray | None = None  # the display copy of ``heat``, what the overlay draws
        self.display_method: Method | None = None  # the method whose default display was last put in the panel
        self.started = 0.0
        self._probabilities_timer = QTimer(self)
        self._probabilities_timer.setSingleShot(True)
        self._probabilities_timer.setInterval(PROBABILITY_DELAY_MS)
        self._probabilities_timer.timeout.connect(self.update_probabilities)

        self.panel.explain_requested.connect(self.explain)
        self.panel.cancel_requested.connect(self.cancel)
        self.panel.open_model_requested.connect(self.choose_model)
        self.panel.overlay_changed.connect(self.redraw)
        self.panel.display_changed.connect(self.restyle)
        self.panel.show_heat.toggled.connect(window.view.set_overlay_visible)
        self.trust.sanity_requested.connect(self.run_sanity_check)
        window.view.overlay_toggled.connect(self._sync_checkbox)
        window.frame_shown.connect(self._on_frame_shown)
        self.controller.progressed.connect(self._on_progress)
        self.controller.finished.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.controller.idle.connect(lambda: self.panel.set_running(False))
        self.scoring.finished.connect(lambda _stage, update: self.panel.set_probabilities(list(update.values)))
        self.scoring.failed.connect(self._on_scoring_failed)
        self._model_arrived.connect(self._on_model_arrived)
        QApplication.instance().aboutToQuit.connect(self.shutdown)
        self.exports = ExportActions(window, self.panel)
        self.explained.connect(self.exports.set_explained)
        window.compare.watch(self)  # the side-by-side pane keeps the previous map
        if model_path is not None:
            self.load_in_background(model_path)

    def shutdown(self) -> None:
        """Stop both workers and wait for their threads and the model loader's; safe to repeat."""
        self.controller.shutdown()
        self.scoring.shutdown()
        for loader in self._loaders:
            loader.join()
        self._loaders.clear()

    def _make_actions(self) -> dict[str, QAction]:
        """E explains and Esc cancels, wherever the focus is in the window."""
        handlers = {"explain": self.explain, "cancel_explanation": self.cancel}
        actions = {}
        for binding in bindings.EXPLAIN_KEYS:
            action = QAction(binding.description, self.window)
            action.setShortcuts(binding.shortcuts())
            action.triggered.connect(handlers[binding.action])
            self.window.addAction(action)
            actions[binding.action] = action
        return actions

    # --- model

    def load_in_background(self, path: Path) -> None:
        """Load a model in a thread, so the image stays usable; the panel says so and Explain waits.

        The start-up model and the panel's Open model… both come this way: reading and checking an
        archive takes seconds that the GUI thread must not spend. ``model_loaded`` says when it is
        done; :meth:`wait_until_ready` waits for it. The model in use stays until another arrives.
        """
        self._loads += 1
        number, device_name = self._loads, self.device_name
        if not self.loading:
            self._model_text = self.panel.model_label.text()
        self.loading = True
        self.panel.set_loading()

        def load() -> None:
            result: LoadedModel | Exception = ModelLoadError("the model loader stopped unexpectedly")
            try:
                result = load_model(Path(path), pick_device(device_name))
            except (ModelLoadError, DeviceError) as error:
                result = error
            finally:  # the GUI hears of every end, so nothing waits for ever
                self._model_arrived.emit(number, path, result)

        self._loaders = [loader for loader in self._loaders if loader.is_alive()]
        loader = threading.Thread(target=load, name="model loader")
        self._loaders.append(loader)
        loader.start()

    def wait_until_ready(self) -> None:
        """Process events until a background load has ended (at once when none runs)."""
        while self.loading:
            QApplication.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 50)

    def _on_model_arrived(self, number: int, path: Path, result: LoadedModel | Exception) -> None:
        if number != self._loads:  # another model was asked for meanwhile
            return
        self.loading = False
        self.adopted = self._adopt(path, result)
        self.model_loaded.emit(self.adopted)

    def open_model(self, path: Path) -> bool:
        """Load a model in the background and wait for it; whether it is now in use (else the current one stays)."""
        self.load_in_background(path)
        self.wait_until_ready()
        return bool(self.adopted)

    def _adopt(self, path: Path, result: LoadedModel | Exception) -> bool:
        """Put a loaded model in use, or say in one line why it is not (the current one stays)."""
        if isinstance(result, Exception):
            error = " ".join(str(result).split())  # one line, whatever the loader's message held
            self.load_error = f"Model not loaded: {error}"
            self._say(self.load_error)
            if self.model is None:
                self.panel.model_label.setText(f"No model: {error}")
            else:  # the panel says LOADING: back to the model still in use, and Explain with it
                self.panel.model_label.setText(self._model_text)
                self.panel.set_running(self.controller.busy)
            return False
        model, device = result, result.device
        self.cancel()
        self.model, self.load_error = model, None
        settle_long_lived_objects()
        self.panel.set_model(model.card, f"{Path(path).name} on {describe(device)}")
        self._forget_explanation()
        self.check_image()
        self.update_probabilities()
        self._say(f"Model {model.card.name} ready on {describe(device)}")
        return True

    def choose_model(self) -> None:
        """The panel's Open model… button: the file is chosen here and loaded off the GUI thread."""
        path, _ = QFileDialog.getOpenFileName(self.window, "Open model", "", "torch.export models (*.pt2)")
        if path:
            self.load_in_background(Path(path))

    def update_probabilities(self) -> None:
        """Have the image on show scored in the background, so the target list says what the model thinks.

        A newer image supersedes a request still waiting; until the scores arrive the list says
        they are pending.
        """
        image, model = self.window.view.image, self.model
        generation = self.scoring.next_generation()
        if model is None or image is None or image.is_colour:
            self.panel.set_probabilities(None)
            return
        self.panel.set_probabilities_pending()

        def work(cancel: CancelToken) -> Iterator[Step]:
            x = to_model_input(model_unit_image(image, model.card.window), model.card.input)
            return probability_steps(model, x)

        self.scoring.start(Job(generation, "scoring", work))

    def check_image(self) -> None:
        """Warn in the panel when the image on show is not of the kind the model's card expects."""
        image, model = self.window.view.image, self.model
        line = "" if model is None or image is None else check_image(model.card.expects, image.frame.header).line()
        self.panel.set_image_check(line)

    def _on_scoring_failed(self, message: str) -> None:
        self.panel.set_probabilities(None)
        self._say(message)

    # --- jobs

    def explain(self) -> None:
        """Snapshot everything the job needs and start it in the background."""
        image: FrameImage | None = self.window.view.image
        if self.loading:
            self._say("The model is still loading")
            return
        if self.model is None or image is None:
            self._say("Open an image and a model first")
            return
        card = self.model.card
        try:
            settings = self.panel.settings(replace(self.model, fast=self.panel.fast.isChecked()))
            x = to_model_input(model_unit_image(image, card.window), card.input)
        except (ValueError, TypeError) as error:
            self._say(str(error))
            return
        explanation = Explanation(ExplanationRequest(settings, x), image)
        self._forget_explanation()
        if settings.method is not self.display_method:  # the reader's choice stays for more of the same method
            self.display_method = settings.method
            self.panel.set_display(settings.method.display)
        self.current, self.outcome, self.started = explanation, Outcome(explanation.request), time.perf_counter()
        self.panel.set_running(True)
        self.panel.set_progress(0.0, 0.0)
        self._say(f"{settings.method.title} running on {describe(self.model.device)}{precision(settings.model)}…")
        self.controller.start(Job(self.controller.next_generation(), "explanation",
                                  lambda cancel: run_session(explanation.request, cancel)))

    def run_sanity_check(self) -> None:
        """Repeat the explanation on a randomized model; costs as much as the explanation.

        The button is live only once the trust figures are in, so the one job that may still be
        winding down then is theirs, already done: it is superseded, not waited for (waiting
        made a quick click do nothing).
        """
        explanation, outcome = self.current, self.outcome
        if explanation is None or outcome is None or outcome.final is None:
            return
        self.trust.sanity_button.setEnabled(False)
        self.panel.set_running(True)
        self.controller.start(Job(self.controller.next_generation(), "sanity check",
                                  lambda cancel: sanity_steps(explanation.request, outcome.final, cancel)))

    def cancel(self) -> None:
        """Stop the job; a map it was still building stays on screen, marked as partial."""
        if self.controller.busy:
            self._say("Cancelled")
            if self.heat is not None and self.outcome is not None and self.outcome.final is None:
                self.cancelled_at = self.panel.progress.value() / self.panel.progress.maximum()
                self.redraw()
        self.controller.cancel()
        self.panel.set_running(False)

    def _on_progress(self, stage: str, update: Update | TrustUpdate) -> None:
        if stage == "explanation":
            self.panel.set_progress(update.progress, time.perf_counter() - self.started)
            self._show(update)
        else:
            self.trust.set_progress(update.progress, "Sanity check" if stage == "sanity" else "Trust figures")

    def _on_finished(self, stage: str, update: Update | TrustUpdate) -> None:
        explanation = self.current
        if explanation is None or self.outcome is None:
            return
        self.outcome = self.outcome.after(Step(stage, update))
        if stage != "explanation" or not explanation.request.settings.trust:
            # The job's last result is in: Explain is live again at once, not after the worker
            # has tidied up (a quick click would otherwise do nothing).
            self.panel.set_running(False)
        if stage == "explanation":
            self._finish_explanation(explanation, update)
        elif stage == "trust":
            self.trust.show_figures(self.outcome.verdict, {**self.outcome.final.figures, **self.outcome.trust},
                                    self.outcome.curves)
            self.trust_finished.emit(update)
        else:
            self.trust.show_sanity(update.figures)
        self.explained.emit(Explained(explanation.image, self.outcome))

    def _finish_explanation(self, explanation: Explanation, update: Update) -> None:
        elapsed = time.perf_counter() - self.started
        self.panel.set_progress(1.0, elapsed)
        self._show(update)
        score = update.figures.get("score")
        settings = explanation.request.settings
        detail = f" (probability {score:.2f}{settings.score_aside})" if score is not None else ""
        # A method's notes (why its map is blank, which layer it read) are part of the result.
        notes = "".join(f" {note}" for note in update.notes)
        self._say(f"Done in {elapsed:.1f} s, {update.evaluations} model evaluations{precision(settings.model)}: "
                  f"{settings.label}{detail}.{notes}")
        self.explanation_finished.emit(update)
        if settings.trust:
            self.trust.set_progress(0.0, "Trust figures")

    def _on_failed(self, message: str) -> None:
        self._say(message)
        self.panel.set_running(False)

    # --- overlay

    def _show(self, update: Update) -> None:
        """Put a map on the image, its colour scale following what is known of the map.

        The map stays on the model's grid and the view stretches it over the image, which is
        the inverse of the model's resize: resampling it to a large radiograph's own pixels on
        the GUI thread for every partial update would cost the reader tens of milliseconds.
        """
        image = self.window.view.image
        if image is None or self.current is None or image.frame is not self.current.frame:
            return
        self.heat = update.heatmap
        if self.cancelled_at is not None:  # the cancel is obeyed at the end of a batch: its map is the last
            self.cancelled_at = None if update.final else update.progress
        self.restyle(keep_scale=not update.final)

    def restyle(self, keep_scale: bool = False) -> None:
        """Draw the map as the panel's Show and Smooth choices say, on a colour scale fitted to that drawing.

        The drawing is a copy: the map, and every export of its values, stay raw. With
        ``keep_scale`` (partial maps) the scale only widens, so the colours do not flicker; the
        final map and a new choice get a scale of their own. Updates with nothing known yet (all
        NaN) leave the scale alone: their fallback top of 1.0 would hide a map whose values are
        all far below it.
        """
        if self.heat is None:
            return
        self.display = self.panel.display()
        self.shown_heat = displayed(self.heat, self.display)
        top = heat_top(self.shown_heat, self.display.show)
        if top > 0:
            self.known_top = max(top, self.known_top or 0.0) if keep_scale else top
        elif not keep_scale:
            self.known_top = None
        self.levels = scale_levels(self.known_top or 0.0, self.display.show)  # a placeholder while none is known
        self.redraw()

    def redraw(self) -> None:
        """Draw the current display copy of the map with the panel's opacity and threshold."""
        self.draw_outlines()
        if self.shown_heat is None or self.levels is None:
            return
        show = self.display.show
        lut = heat_lut(self.panel.opacity_value(), self.panel.threshold_value(), show)
        self.window.view.show_heatmap(self.shown_heat, self.levels, lut)
        self.window.view.set_overlay_visible(self.panel.show_heat.isChecked())
        settings = self.current.request.settings if self.current else None
        text = scale_text(settings.units, self.display, settings.model.fast) if settings else ""
        partial = self.partial_text()
        self.panel.colour_bar.set_levels(self.levels, f"{text} — {partial}" if partial else text, show)
        self.mark_partial(partial)

    def partial_text(self) -> str:
        """``partial: cancelled at 40%`` for a map a cancel stopped; empty for any other."""
        return "" if self.cancelled_at is None else f"partial: cancelled at {100 * self.cancelled_at:.0f}%"

    def mark_partial(self, text: str) -> None:
        """Label the image on show at its top edge with ``text``; no label when it is empty."""
        self.partial_label.setVisible(bool(text))
        if text:
            rect = self.window.view.image_rect()
            self.partial_label.setText(text.upper().replace(": ", " — ", 1))
            self.partial_label.setPos(rect.center().x(), rect.top())

    def draw_outlines(self) -> None:
        """Outline the regions the method worked on (LIME's superpixels), on the image's own pixels."""
        explanation, image = self.current, self.window.view.image
        outlines = explanation.method.outlines if explanation is not None else None
        if (outlines is None or not self.panel.show_outlines.isChecked() or image is None
                or image.frame is not explanation.frame):
            self.segment_outlines.clear()
            return
        labels = outlines.labels(explanation.request.model_input, explanation.request.settings.params)
        rows, columns = image.stored.shape[:2]
        on_image = labels[np.arange(rows) * labels.shape[0] // rows][:, np.arange(columns) * labels.shape[1] // columns]
        outline = np.zeros((rows, columns, 4), dtype=np.uint8)
        outline[find_boundaries(on_image, mode="inner")] = SEGMENT_OUTLINE
        self.segment_outlines.setImage(outline, autoLevels=False, levels=(0, 255))
        self.segment_outlines.setRect(self.window.view.image_rect())

    def _forget_explanation(self) -> None:
        """Nothing explained on screen: no overlay, no figures, nothing to export."""
        self.current, self.outcome, self.heat, self.shown_heat, self.levels, self.known_top = (None,) * 6
        self.cancelled_at = None
        self.mark_partial("")
        self.window.view.overlay.clear()
        self.segment_outlines.clear()
        self.panel.colour_bar.set_levels(None)
        self.trust.clear()
        self.explained.emit(None)

    def _on_frame_shown(self, frame: Frame) -> None:
        """Another image is on show: whatever ran or was shown was for the old one, status lines included."""
        if frame is not self._last_frame:
            self._last_frame = frame
            if self.current is None or frame is not self.current.frame:
                self.panel.clear_run()
        if self.current is not None and frame is not self.current.frame:
            self.controller.next_generation()
            self.panel.set_running(False)
            self._forget_explanation()
        self.check_image()
        if self.model is not None:
            self.panel.set_probabilities_pending()  # the last image's scores are not this one's
        self._probabilities_timer.start()

    def _sync_checkbox(self, visible: bool) -> None:
        self.panel.show_heat.blockSignals(True)
        self.panel.show_heat.setChecked(visible)
        self.panel.show_heat.blockSignals(False)

    def _say(self, text: str) -> None:
        self.panel.set_status(text)
        self.window.statusBar().showMessage(text, 8000)
