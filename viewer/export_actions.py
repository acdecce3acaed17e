"""File > Export: the explanation on screen as DICOM or a report, and the view as a picture.

The DICOM and report items are enabled only while a final explanation is on screen, for the
image it was made for; the trust figures and verdict go along once they have arrived. One
checkable item, remembered between sessions and on by default, de-identifies every export; the
picture of the view then leaves out the corner text, which names the patient. The picture of the view
shows the measurements as on screen, and the report draws and lists those of the explained frame. A failed export
says why in one line in the status bar and changes nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog

from exports.deidentify import BURNED_IN_REFUSAL, has_burned_in_annotation
from exports.dicom_objects import ExportedExplanation, ExportError, write_parametric_map, write_secondary_capture
from exports.explained import Explained
from exports.key_image_report import write_report
from viewer.explain_panel import ExplainPanel
from viewer.main_window import MainWindow
from viewer.pacs_send import PacsSend

DEIDENTIFY_KEY = "export/deidentify"
FOLDER_KEY = "export/folder"

Writer = Callable[[ExportedExplanation, Path, bool], object]
#: kind: (what it is called, file suffix, dialog filter, writer)
KINDS: dict[str, tuple[str, str, str, Writer]] = {
    "parametric_map": ("Parametric Map", "-heatmap.dcm", "DICOM (*.dcm)", write_parametric_map),
    "secondary_capture": ("Secondary Capture", "-overlay.dcm", "DICOM (*.dcm)", write_secondary_capture),
    "report": ("key-image report", "-report.html", "HTML (*.html)", write_report),
}


class ExportActions(QObject):
    """The Export submenu of a main window, fed finished explanations through :meth:`set_explained`.

    The panel gives the overlay's opacity, threshold and display choices at the time of export,
    so a burned-in picture looks as the reader has it on screen.
    """

    def __init__(self, window: MainWindow, panel: ExplainPanel) -> None:
        super().__init__(window)
        self.window, self.panel = window, panel
        self.explained: Explained | None = None
        menu = window.export_menu
        self.actions = {kind: menu.addAction(f"{name[0].upper()}{name[1:]} ({pattern.split()[0]})…",
                                             lambda _=False, k=kind: self.export(k))
                        for kind, (name, _, pattern, _) in KINDS.items()}
        menu.addSeparator()
        self.view_action = menu.addAction("View as PNG…", self.export_view)
        menu.addSeparator()
        self.deidentify = menu.addAction("De-identify exports")
        self.deidentify.setCheckable(True)
        self.deidentify.setChecked(str(window.settings.value(DEIDENTIFY_KEY, "true")).lower() == "true")
        self.deidentify.toggled.connect(lambda on: window.settings.setValue(DEIDENTIFY_KEY, "true" if on else "false"))
        self.send = PacsSend(window, self.on_screen)
        menu.aboutToShow.connect(self.update_enabled)
        window.file_menu.aboutToShow.connect(self.update_enabled)
        window.frame_shown.connect(self.update_enabled)
        self.update_enabled()

    def update_enabled(self) -> None:
        on_screen = self.on_screen() is not None
        for action in (*self.actions.values(), self.send.action):
            action.setEnabled(on_screen)
        self.view_action.setEnabled(self.window.view.image is not None)

    def set_explained(self, explained: Explained | None) -> None:
        """The latest finished explanation (None once it is forgotten), with every stage done so far."""
        self.explained = explained
        self.update_enabled()

    def on_screen(self) -> ExportedExplanation | None:
        """The final explanation on show, as the reader sees it; None when there is none."""
        explained, image, view = self.explained, self.window.view.image, self.window.view
        if explained is None or image is None or image.frame is not explained.frame:
            return None
        return explained.for_export(voi=view.voi, invert=view.inverted, opacity=self.panel.opacity_value(),
                                    threshold=self.panel.threshold_value(), display=self.panel.display())

    # --- exporting

    def export(self, kind: str) -> None:
        """Ask where, then write; nothing happens when the dialog is cancelled."""
        name, suffix, pattern, _ = KINDS[kind]
        path = self._ask(f"Export {name}", suffix, pattern)
        if path is not None:
            self.write(kind, path)

    def write(self, kind: str, path: Path) -> bool:
        """Write one kind of export of what is on screen; True when it was written."""
        name, _, _, writer = KINDS[kind]
        result = self.on_screen()
        if result is None:
            self._say("Nothing to export: explain the image first")
            return False
        extra = {"measurements": self.window.measurements.measurements()} if kind == "report" else {}
        try:
            writer(result, path, self.deidentify.isChecked(), **extra)
        except ExportError as error:
            self._say(f"{name[0].upper()}{name[1:]} not saved: {error}")
            return False
        self._saved(name, path)
        return True

    def export_view(self) -> None:
        path = self._ask("Save the view as PNG", "-view.png", "PNG (*.png)")
        if path is not None:
            self.write_view(path)

    def write_view(self, path: Path) -> bool:
        """The image view as on screen; without the corner text (names, dates) when de-identifying.

        Refused when de-identifying an image with burned-in annotation: the text is in its pixels.
        """
        view = self.window.view
        if self.deidentify.isChecked() and view.image is not None and has_burned_in_annotation(view.image.frame.header):
            self._say(f"View not saved: {BURNED_IN_REFUSAL}")
            return False
        hide_text = self.deidentify.isChecked() and view.corner_text_visible
        if hide_text:
            view.set_corner_text_visible(False)
        try:
            saved = view.grab().save(str(path), "PNG")
        finally:
            if hide_text:
                view.set_corner_text_visible(True)
        if not saved:
            self._say(f"View not saved: cannot write {path}")
            return False
        self._saved("view", path)
        return True

    def _ask(self, title: str, suffix: str, pattern: str) -> Path | None:
        folder = Path(str(self.window.settings.value(FOLDER_KEY, str(Path.home()))))
        image = self.window.view.image
        stem = image.frame.path.stem if image is not None else "lightbox"
        chosen, _ = QFileDialog.getSaveFileName(self.window, title, str(folder / f"{stem}{suffix}"), pattern)
        if not chosen:
            return None
        self.window.settings.setValue(FOLDER_KEY, str(Path(chosen).parent))
        return Path(chosen)

    def _saved(self, name: str, path: Path) -> None:
        self._say(f"Saved the {name} to {path}" + (" (de-identified)" if self.deidentify.isChecked() else ""))

    def _say(self, text: str) -> None:
        self.window.statusBar().showMessage(text, 10000)
