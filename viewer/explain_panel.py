"""The explanation panel: model, target, method and its parameters, progress and overlay controls.

The panel only gathers choices and shows state; the main window turns a click on Explain into a
request. Parameter widgets are built from each method's parameter dataclass, so a new method
appears here with its options without touching this file.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from explain.baselines import BASELINE_NAMES, parse_baseline
from explain.method import SHOWS, Display, Method
from explain.methods import METHODS
from explain.model_card import ModelCard
from explain.model_file import SCORES, LoadedModel
from explain.session import REMOVALS, ExplanationSettings, explained_score, saturation_note
from exports.heat_colours import colour_table
from viewer.engine_loader import LOADING

#: Beside each label while the model scores the image on show.
PENDING = "  · scoring…"
#: How each choice of what the trust figures remove pixels to reads in the panel.
REMOVAL_TEXT = {"baseline": "the method's baseline", "blur": "a blur of the image"}
#: Limits of the numeric parameter boxes; generous, the engine checks what really fits.
INT_RANGE = (0, 100_000)
FLOAT_RANGE = (-1e6, 1e6)
#: How each display choice of the overlay reads in the panel.
SHOW_TEXT = {"signed": "signed", "positive": "positive only", "absolute": "absolute value"}
#: The most smoothing offered, in pixels of the map's grid: more blurs a 224-pixel map into one blob.
MAX_SMOOTH = 20.0


def remaining_text(progress: float, elapsed: float) -> str:
    """``42% · about 3 s left``, estimated from the pace so far."""
    percent = f"{100 * progress:.0f}%"
    if progress <= 0 or progress >= 1 or elapsed < 0.5:
        return percent
    left = elapsed * (1 - progress) / progress
    return f"{percent} · about {left:.0f} s left" if left < 90 else f"{percent} · about {left / 60:.0f} min left"


def warning_label() -> QLabel:
    """An amber line that says, before a run, what would make its map mislead; hidden while empty."""
    label = QLabel("")
    label.setWordWrap(True)
    label.setStyleSheet("color: #d08000;")
    label.hide()
    return label


def show_warning(label: QLabel, text: str) -> None:
    """Show a warning line, or hide it when there is nothing to say, so no blank line takes room."""
    label.setText(text)
    label.setVisible(bool(text))


class WheelOnlyWhenFocused(QObject):
    """Spin boxes, combos and sliders take the wheel only when focused; otherwise it scrolls the panel.

    Scrolling down a panel must never change a parameter it passes over.
    """

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() != QEvent.Type.Wheel or not isinstance(watched, QWidget) or watched.hasFocus():
            return False
        area = watched.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:
            QApplication.sendEvent(area.verticalScrollBar(), event)
        else:
            event.ignore()
        return True


def guard_wheel(root: QWidget, guard: QObject) -> None:
    """Make every value editor under ``root`` wheel-safe (see :class:`WheelOnlyWhenFocused`)."""
    for widget in root.findChildren(QWidget):
        if isinstance(widget, (QAbstractSpinBox, QComboBox, QAbstractSlider)):
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            widget.installEventFilter(guard)


class ParameterForm(QWidget):
    """Editors for one method's parameters, defaults filled in."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.editors: dict[str, QWidget] = {}
        for field in fields(method.params):
            editor = self._editor(field.name, field.default)
            editor.setToolTip(method.hints.get(field.name, ""))
            self.editors[field.name] = editor
            layout.addRow(field.name.replace("_", " ").capitalize(), editor)
        self.reset()

    def reset(self) -> None:
        """Every editor back to its parameter's default, as the method's parameters dataclass has it."""
        for field in fields(self.method.params):
            editor = self.editors[field.name]
            if isinstance(editor, QCheckBox):
                editor.setChecked(field.default)
            elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
                editor.setValue(field.default)
            else:
                editor.setCurrentText(str(field.default))

    def _editor(self, name: str, default: Any) -> QWidget:
        if name in self.method.image_or_value:
            box = QComboBox()
            box.setEditable(True)
            box.addItems(list(dict.fromkeys([str(default), *BASELINE_NAMES, "0.0"])))
            return box
        if name in self.method.choices:
            box = QComboBox()
            box.addItems(list(self.method.choices[name]))
            return box
        if isinstance(default, bool):
            return QCheckBox()
        if isinstance(default, int):
            spin = QSpinBox()
            spin.setRange(*INT_RANGE)
            return spin
        if isinstance(default, float):
            spin = QDoubleSpinBox()
            spin.setRange(*FLOAT_RANGE)
            spin.setDecimals(3)
            return spin
        box = QComboBox()
        box.setEditable(True)
        box.addItem(str(default))
        return box

    def values(self) -> Any:
        """The method's parameter object for what the editors show; ``ValueError`` if malformed."""
        values: dict[str, Any] = {}
        for name, editor in self.editors.items():
            if name in self.method.image_or_value:
                values[name] = parse_baseline(editor.currentText().strip())
            elif isinstance(editor, QCheckBox):
                values[name] = editor.isChecked()
            elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
                values[name] = editor.value()
            else:
                values[name] = editor.currentText()
        return self.method.make_params(values)


class ExplainPanel(QWidget):
    """Choices for an explanation and the state of the running one."""

    explain_requested = Signal()
    cancel_requested = Signal()
    open_model_requested = Signal()
    overlay_changed = Signal()
    display_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_label = QLabel("No model")
        self.model_label.setWordWrap(True)
        open_model = QPushButton("Open model…")
        open_model.setToolTip("A torch.export archive (.pt2) with its JSON card beside it")
        open_model.clicked.connect(self.open_model_requested)
        self.target = QComboBox()
        self.score = QComboBox()
        self.score.addItems(list(SCORES))
        self.score.setToolTip("What the map explains of the target: its probability, or its log-odds, which still "
                              "moves when a model sure of itself has its probability stuck at 0 or 1")
        self.saturation = warning_label()
        self.image_check = warning_label()
        self.probabilities: list[float] | None = None
        self.method = QComboBox()
        self.forms = QStackedWidget()
        for method in METHODS.values():
            self.method.addItem(method.title, method.name)
            self.forms.addWidget(ParameterForm(method))
        self.reset_button = QPushButton("Reset to defaults")
        self.reset_button.setToolTip("Put every parameter of this method, and how its map is shown, back to its default")
        self.reset_button.clicked.connect(self.reset_method)
        self.fast = QCheckBox("Fast mode (half precision)")
        self.fast.setToolTip("bfloat16 on the CPU, float16 on a GPU: several times faster where the hardware "
                             "supports it; the map differs slightly from the exact one")
        self.batch_size = QSpinBox()
        self.batch_size.setRange(0, 4096)
        self.batch_size.setSpecialValueText("tuned while running")
        self.batch_size.setToolTip("Inputs scored at once; any size gives the same map")
        self.trust_figures = QCheckBox("Trust figures after the map")
        self.trust_figures.setChecked(True)
        self.removal = QComboBox()
        for removal in REMOVALS:
            self.removal.addItem(REMOVAL_TEXT[removal], removal)
        self.removal.setToolTip("What the trust figures replace removed pixels with")
        self.trust_figures.toggled.connect(self.removal.setEnabled)
        self.sanity = QCheckBox("Sanity check too (costs a second explanation)")
        self.explain_button = QPushButton("Explain (E)")
        self.explain_button.setDefault(True)
        self.explain_button.clicked.connect(self.explain_requested)
        self.cancel_button = QPushButton("Cancel (Esc)")
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.show_heat = QCheckBox("Show heatmap (H)")
        self.show_heat.setChecked(True)
        self.show_outlines = QCheckBox("Show regions")
        self.method.currentIndexChanged.connect(self._show_form)
        for choice in (self.target, self.score, self.method):
            choice.currentIndexChanged.connect(self.update_saturation)
        self._show_form(0)
        self.opacity = self._slider(60)
        self.threshold = self._slider(10)
        self.sign_choice = QComboBox()
        for show in SHOWS:
            self.sign_choice.addItem(SHOW_TEXT[show], show)
        self.sign_choice.setToolTip("Signed: evidence for the target red, against it blue. Positive only: the "
                                    "evidence for it. Absolute value: how much each pixel matters, either way")
        self.smoothing = QDoubleSpinBox()
        self.smoothing.setRange(0.0, MAX_SMOOTH)
        self.smoothing.setDecimals(1)
        self.smoothing.setSingleStep(0.5)
        self.smoothing.setSpecialValueText("off")
        self.smoothing.setToolTip("Gaussian smoothing of the map as drawn, its width in the map's own pixels; "
                                  "the map, its .npz and its Parametric Map keep the raw values")
        self.sign_choice.currentIndexChanged.connect(self.display_changed)
        self.smoothing.valueChanged.connect(self.display_changed)
        self.colour_bar = ColourBar()
        for control in (self.show_heat, self.show_outlines):
            control.toggled.connect(self.overlay_changed)
        for slider in (self.opacity, self.threshold):
            slider.valueChanged.connect(self.overlay_changed)
        self._layout(open_model)
        self.wheel_guard = WheelOnlyWhenFocused(self)
        guard_wheel(self, self.wheel_guard)
        self.set_running(False)

    @staticmethod
    def _slider(value: int) -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(0, 100)
        slider.setValue(value)
        return slider

    def _layout(self, open_model: QPushButton) -> None:
        model_box = QGroupBox("Model")
        model_layout = QFormLayout(model_box)
        model_layout.addRow(self.model_label)
        model_layout.addRow(open_model)
        model_layout.addRow("Explain", self.target)
        model_layout.addRow("Score", self.score)
        model_layout.addRow(self.saturation)
        model_layout.addRow(self.image_check)
        method_box = QGroupBox("Method")
        method_layout = QVBoxLayout(method_box)
        method_layout.addWidget(self.method)
        method_layout.addWidget(self.forms)
        method_layout.addWidget(self.reset_button, 0, Qt.AlignmentFlag.AlignRight)
        run_layout = QFormLayout()
        run_layout.addRow(self.fast)
        run_layout.addRow("Batch size", self.batch_size)
        run_layout.addRow(self.trust_figures)
        run_layout.addRow("Remove pixels to", self.removal)
        run_layout.addRow(self.sanity)
        method_layout.addLayout(run_layout)
        method_layout.addWidget(self.status)
        # Explain, Cancel and the progress stay put in a bar of their own (see run_bar), outside
        # whatever scrolls, so Cancel is where Explain was.
        self.run_bar = QWidget()
        bar = QHBoxLayout(self.run_bar)
        bar.setContentsMargins(6, 4, 6, 4)
        bar.addWidget(self.explain_button)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.progress, 1)
        overlay_box = QGroupBox("Overlay")
        overlay_layout = QFormLayout(overlay_box)
        overlay_layout.addRow(self.show_heat)
        overlay_layout.addRow(self.show_outlines)
        overlay_layout.addRow("Show", self.sign_choice)
        overlay_layout.addRow("Smooth (px)", self.smoothing)
        overlay_layout.addRow(self.colour_bar)
        overlay_layout.addRow("Opacity", self.opacity)
        overlay_layout.addRow("Threshold", self.threshold)
        layout = QVBoxLayout(self)
        for box in (model_box, method_box, overlay_box):
            layout.addWidget(box)
        layout.addStretch(1)

    def _show_form(self, index: int) -> None:
        """Show one method's parameters, the panel as tall as they need and no taller."""
        for page in range(self.forms.count()):
            policy = QSizePolicy.Policy.Preferred if page == index else QSizePolicy.Policy.Ignored
            self.forms.widget(page).setSizePolicy(policy, policy)
        self.forms.setCurrentIndex(index)
        self.forms.adjustSize()
        outlines = self.current_method().outlines
        self.show_outlines.setEnabled(outlines is not None)
        self.show_outlines.setText(f"Show {outlines.title}" if outlines else "Show regions")
        self.show_outlines.setToolTip(f"Outline the {outlines.title} {self.current_method().title} worked on"
                                      if outlines else "This method works on no regions to outline")

    def set_model(self, card: ModelCard | None, detail: str = "") -> None:
        """Show the model's name; the target list follows its labels."""
        self.model_label.setText(f"<b>{card.name}</b><br>{detail}" if card else "No model")
        self.probabilities = None  # another model's scores
        self.target.clear()
        if card is not None:
            for label in card.labels:
                self.target.addItem(label)
            self.target.setCurrentIndex(len(card.labels) - 1)
        self.explain_button.setEnabled(card is not None)

    def set_loading(self) -> None:
        """Say the model is on its way; Explain waits for it."""
        self.model_label.setText(LOADING)
        self.explain_button.setEnabled(False)

    def set_probabilities(self, probabilities: list[float] | None) -> None:
        """Put the model's probability for the current image beside each label."""
        self.probabilities = probabilities
        self.update_saturation()
        for index in range(self.target.count()):
            label = self._label(index)
            text = label if probabilities is None else f"{label}  ({probabilities[index]:.2f})"
            self.target.setItemText(index, text)

    def set_probabilities_pending(self) -> None:
        """Say that the image on show is being scored, so no label shows another image's probability."""
        self.probabilities = None
        self.update_saturation()
        for index in range(self.target.count()):
            self.target.setItemText(index, f"{self._label(index)}{PENDING}")

    def _label(self, index: int) -> str:
        return self.target.itemText(index).split("  (")[0].removesuffix(PENDING)

    def method_name(self) -> str:
        return str(self.method.currentData())

    def current_method(self) -> Method:
        return METHODS[self.method_name()]

    def reset_method(self) -> None:
        """The current method's parameters and its display back to their defaults."""
        self.forms.currentWidget().reset()
        self.set_display(self.current_method().display)

    def parameters(self) -> Any:
        return self.forms.currentWidget().values()

    def settings(self, model: LoadedModel) -> ExplanationSettings:
        """Everything chosen here for an explanation with ``model``; ValueError if a parameter is malformed."""
        return ExplanationSettings(self.current_method(), self.parameters(), model, self.target_index(),
                                   trust=self.trust_figures.isChecked(), removal=str(self.removal.currentData()),
                                   sanity=self.sanity.isChecked(), batch_size=self.batch_size.value() or None,
                                   score=self.score.currentText())

    def update_saturation(self) -> None:
        """Say before a run, in one line, that the target's probability on this image is saturated.

        Its map would be blank; the reader may choose the log-odds. The score is not switched for
        them, so that a map's units never change from one image to the next.
        """
        index, probabilities = self.target_index(), self.probabilities
        note = ""
        if probabilities is not None and 0 <= index < len(probabilities):
            note = saturation_note(probabilities[index], explained_score(self.current_method(), self.score.currentText()))
        show_warning(self.saturation, note)

    def set_image_check(self, text: str) -> None:
        """Say before a run, in one line, that the image is not of the kind the model expects.

        Only a warning: the reader may still explain it (see :mod:`explain.expected_images`).
        """
        show_warning(self.image_check, text)

    def target_index(self) -> int:
        return self.target.currentIndex()

    def set_running(self, running: bool) -> None:
        self.explain_button.setEnabled(not running and self.target.count() > 0)
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress.setFormat("%p%")

    def clear_run(self) -> None:
        """Another image is on show: no progress or status line of the last one stays."""
        self.set_running(False)
        self.progress.setValue(0)
        self.set_status("")

    def set_progress(self, progress: float, elapsed: float) -> None:
        self.progress.setValue(round(progress * 1000))
        self.progress.setFormat(remaining_text(progress, elapsed))

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def opacity_value(self) -> float:
        return self.opacity.value() / 100.0

    def threshold_value(self) -> float:
        return self.threshold.value() / 100.0

    def display(self) -> Display:
        """How the reader has chosen to draw the map: which of its signs, how smoothed."""
        return Display(str(self.sign_choice.currentData()), self.smoothing.value())

    def set_display(self, display: Display) -> None:
        """Put a method's default display in the controls, announced once for both."""
        with QSignalBlocker(self.sign_choice), QSignalBlocker(self.smoothing):
            self.sign_choice.setCurrentIndex(self.sign_choice.findData(display.show))
            self.smoothing.setValue(display.smooth)
        self.display_changed.emit()


class ColourBar(QWidget):
    """The heatmap's colour scale with its fixed ends, so a colour can be read as a number."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.gradient = QLabel()
        self.gradient.setMinimumHeight(14)
        self.gradient.setScaledContents(True)
        self.show_colours("positive")
        self.low, self.high, self.unit = QLabel(""), QLabel(""), QLabel("")
        self.high.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.unit.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.unit.setWordWrap(True)
        ends = QHBoxLayout()
        ends.addWidget(self.low)
        ends.addWidget(self.unit, 1)
        ends.addWidget(self.high)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.gradient)
        layout.addLayout(ends)

    def show_colours(self, show: str) -> None:
        """Draw the colour map of a display choice (see :func:`~exports.heat_colours.colour_table`)."""
        table = np.ascontiguousarray(colour_table(show)[None, :, :])
        image = QImage(table.data, 256, 1, 3 * 256, QImage.Format.Format_RGB888).copy()  # its own pixels
        self.gradient.setPixmap(QPixmap.fromImage(image))

    def set_levels(self, levels: tuple[float, float] | None, unit: str = "", show: str = "positive") -> None:
        """Label the ends and colour the bar as the overlay is drawn; None clears the labels when no heatmap is shown."""
        self.show_colours(show)
        self.low.setText("" if levels is None else f"{levels[0]:.3g}")
        self.high.setText("" if levels is None else f"{levels[1]:.3g}")
        self.unit.setText("" if levels is None else unit)
