"""What the reader sees of the overlay's display choices: signed, positive only, absolute value, smoothed.

Integrated gradients on the demo study from a black start: its map is signed and speckled pixel by
pixel, which is what the choices are for. Every check is on the screen's pixels or on what is exported.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dicom.bundled import DEMO_MODEL, DEMO_STUDY
from explain.method import Display
from explain.preprocessing import to_image_grid
from tests.viewer.conftest import coloured, coloured_fraction, on_screen, view_rgb
from viewer.explanation_ui import ExplanationUi

#: The demo's fluid as a share of the film: the demo model's heat gathers there.
FLUID_SHARE = float((np.asarray(Image.open(DEMO_STUDY.with_suffix(".mask.png"))) > 0).mean())


def explain(qtbot, ui: ExplanationUi, method: str, **options: int | str) -> np.ndarray:
    """Run one method to its final map, no trust figures; the map as the method made it."""
    ui.panel.method.setCurrentIndex(ui.panel.method.findData(method))
    for name, value in options.items():
        editor = ui.panel.forms.currentWidget().editors[name]
        editor.setCurrentText(value) if isinstance(value, str) else editor.setValue(value)
    with qtbot.waitSignal(ui.explanation_finished, timeout=60000) as finished:
        ui.explain()
    qtbot.wait(50)
    return finished.args[0].heatmap


@pytest.fixture
def ui(qtbot, window):
    """The demo study on screen with the demo model, integrated gradients' map on it."""
    ui = ExplanationUi(window, DEMO_MODEL)
    ui.wait_until_ready()
    window.open_paths([str(DEMO_STUDY)])
    ui.panel.trust_figures.setChecked(False)
    explain(qtbot, ui, "ig", steps=16, baseline="black")
    yield ui
    ui.shutdown()


def show(qtbot, ui: ExplanationUi, display: Display) -> None:
    """Choose a display in the panel, as the reader does, and let the view repaint."""
    ui.panel.sign_choice.setCurrentIndex(ui.panel.sign_choice.findData(display.show))
    ui.panel.smoothing.setValue(display.smooth)
    qtbot.wait(20)


def cell_colours(ui: ExplanationUi, cells: np.ndarray) -> np.ndarray:
    """The screen's RGB at the centre of each of the map's cells, given as (row, column) on the model's grid."""
    view = ui.window.view
    rect, (rows, columns) = view.image_rect(), ui.heat.shape
    rgb = view_rgb(view)
    points = [on_screen(view, (c + 0.5) * rect.width() / columns, (r + 0.5) * rect.height() / rows) for r, c in cells]
    return np.array([rgb[point] for point in points])


def test_gradients_start_smoothed_in_absolute_value_where_signed_speckle_is_faint(qtbot, ui):
    assert ui.panel.display() == Display("absolute", 2.0), "integrated gradients' own default display"
    smoothed_magnitude = coloured_fraction(ui.window)
    show(qtbot, ui, Display("signed", 0.0))
    speckle = coloured_fraction(ui.window)
    # The demo model's score changes with the fluid alone, so its heat covers about the fluid's area.
    assert smoothed_magnitude > 0.4 * FLUID_SHARE, "the heat is plain to see"
    assert smoothed_magnitude > 2 * speckle, "far more than the signed speckle shows"


def test_positive_only_shows_no_heat_where_the_map_is_negative(qtbot, ui):
    against = np.argwhere(ui.heat < -0.2 * np.nanmax(np.abs(ui.heat)))
    assert len(against) > 20, "integrated gradients has evidence against the target on the demo"
    show(qtbot, ui, Display("signed", 0.0))
    assert coloured(cell_colours(ui, against)).mean() > 0.9, "signed shows the evidence against"
    show(qtbot, ui, Display("positive", 0.0))
    assert coloured(cell_colours(ui, against)).mean() < 0.02, "positive only leaves it out"


def test_smoothing_changes_the_screen_and_the_capture_but_not_the_stored_map(qtbot, ui):
    raw = ui.outcome.final.heatmap.copy()
    show(qtbot, ui, Display("absolute", 0.0))
    sharp, sharp_capture = view_rgb(ui.window.view), ui.exports.on_screen()
    show(qtbot, ui, Display("absolute", 3.0))
    smooth, smooth_capture = view_rgb(ui.window.view), ui.exports.on_screen()
    changed = (np.abs(smooth - sharp).max(axis=2) > 30).mean()
    assert changed > 0.25 * FLUID_SHARE, "the screen changed over much of the fluid's area, where the heat is"
    assert np.array_equal(ui.heat, raw, equal_nan=True)
    assert np.array_equal(ui.outcome.final.heatmap, raw, equal_nan=True)
    on_image = to_image_grid(raw, smooth_capture.shown.shape[:2])
    for exported in (sharp_capture, smooth_capture):
        assert np.array_equal(exported.heatmap, on_image, equal_nan=True), "the Parametric Map keeps the raw map"
    assert not np.array_equal(sharp_capture.overlay(), smooth_capture.overlay()), "the Secondary Capture follows"


def test_the_secondary_capture_shows_the_signs_on_screen(qtbot, ui):
    def blue_share(display: Display) -> float:
        show(qtbot, ui, display)
        picture = ui.exports.on_screen().overlay().astype(int)
        return float((picture[..., 2] > picture[..., 0] + 60).mean())

    assert blue_share(Display("signed", 0.0)) > 0.001, "evidence against is blue, as on screen"
    assert blue_share(Display("positive", 0.0)) == 0.0


def test_the_colour_bar_follows_the_choice(qtbot, ui):
    bar = ui.panel.colour_bar
    show(qtbot, ui, Display("signed", 0.0))
    assert float(bar.low.text()) == -float(bar.high.text()) < 0, "symmetric about zero"
    assert float(bar.high.text()) == pytest.approx(np.nanmax(np.abs(ui.heat)), rel=1e-2)
    signed_end = bar.gradient.pixmap().toImage().pixelColor(0, 0)
    show(qtbot, ui, Display("positive", 2.0))
    assert bar.low.text() == "0" and float(bar.high.text()) < np.nanmax(ui.heat), "the smoothed map's own top"
    assert "smoothed 2\N{NO-BREAK SPACE}px" in bar.unit.text()
    heat_end = bar.gradient.pixmap().toImage().pixelColor(0, 0)
    assert signed_end.blue() > 200 and heat_end.blue() < 50, "the diverging scale, then the heat scale"


def test_each_method_starts_with_its_own_display_and_the_readers_choice_stays_for_it(qtbot, ui):
    show(qtbot, ui, Display("signed", 1.0))
    explain(qtbot, ui, "ig", steps=8)
    assert ui.panel.display() == Display("signed", 1.0), "the reader's choice stays for the same method"
    explain(qtbot, ui, "occlusion", window=56, stride=56)
    assert ui.panel.display() == Display("positive", 0.0), "occlusion is shown as it always was"
