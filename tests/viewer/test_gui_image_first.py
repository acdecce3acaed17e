"""The image first, torch later: the window paints the study before the engine and its model load."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from PySide6.QtGui import QImage

from dicom.bundled import DEMO_MODEL
from viewer.engine_loader import LOADING

ROOT = Path(__file__).resolve().parents[2]

#: Runs the GUI offscreen on the demo; records whether torch was imported when the first image was
#: painted (the moment the engine's import starts), then quits once the engine is in.
FIRST_PAINT_PROBE = textwrap.dedent("""
    import sys
    from PySide6.QtWidgets import QApplication
    from viewer import engine_loader
    from viewer.app import run_gui

    start = engine_loader.EngineLoader.start

    def start_after_paint(self):
        window = self.parent()
        print("image painted:", window.view.image is not None, "torch:", "torch" in sys.modules)
        self.ready.connect(lambda module: QApplication.quit())
        start(self)

    engine_loader.EngineLoader.start = start_after_paint
    run_gui([])
    print("torch at the end:", "torch" in sys.modules)
""")


def run_python(code: str, tmp_path: Path) -> str:
    env = {"QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_window_paints_the_image_before_torch_is_imported(tmp_path):
    out = run_python(FIRST_PAINT_PROBE, tmp_path)
    assert "image painted: True torch: False" in out and "torch at the end: True" in out


def test_a_screenshot_without_an_explanation_never_imports_torch(tmp_path):
    shot = tmp_path / "demo.png"
    out = run_python(f"import sys, main; code = main.main(['--screenshot', {str(shot)!r}]); "
                     f"print(code, 'torch' in sys.modules)", tmp_path)
    assert out.split() == ["0", "False"]
    assert not QImage(str(shot)).isNull()


def test_the_panel_says_the_model_is_loading_and_explain_waits_for_it(window):
    from viewer.explanation_ui import ExplanationUi

    ui = ExplanationUi(window, DEMO_MODEL)
    try:
        assert ui.panel.model_label.text() == LOADING and not ui.panel.explain_button.isEnabled()
        ui.explain()
        assert ui.panel.status.text() == "The model is still loading" and not ui.controller.busy
        ui.wait_until_ready()
        assert ui.model is not None and ui.panel.explain_button.isEnabled()
        assert ui.dock is window.findChild(type(ui.dock), "explain_dock")
    finally:
        ui.shutdown()
