"""File > Send explanation to PACS: the Parametric Map and the Secondary Capture, identified, to a node.

What is sent joins the patient's own study, with the patient's name and ID, because that is where
a radiologist looks for it; the dialog says so before anything leaves. De-identified DICOM stays a
file export (File > Export). Both objects are written to a temporary folder and sent by C-STORE or
STOW-RS in a :class:`~viewer.pacs_job.PacsJob`; the dialog then says, per object, whether the PACS
took it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from exports.dicom_objects import ExportedExplanation, write_parametric_map, write_secondary_capture
from pacs.client import open_client
from pacs.errors import PacsError
from pacs.nodes import Node
from pacs.records import Sent
from viewer.pacs_job import Jobs
from viewer.pacs_node_chooser import NodeChooser
from viewer.pacs_window import date, person

#: What is sent, in order: (name, file name, writer).
OBJECTS = (("Parametric Map", "explanation-heatmap.dcm", write_parametric_map),
           ("Secondary Capture", "explanation-overlay.dcm", write_secondary_capture))
IDENTIFIED = ("Sends the Parametric Map and the Secondary Capture of the explanation on screen, <b>identified</b>: "
              "they carry the patient's name and ID and join the patient's own study on the PACS, as a new series. "
              "De-identified DICOM is a file export (File > Export).")


def send(node: Node, move_port: int, result: ExportedExplanation) -> list[Sent]:
    """Write both objects, identified, and send them; one answer per object, in :data:`OBJECTS` order."""
    with tempfile.TemporaryDirectory(prefix="lightbox-send-") as folder:
        paths = [Path(folder) / file_name for _name, file_name, _writer in OBJECTS]
        for (_name, _file_name, writer), path in zip(OBJECTS, paths, strict=True):
            writer(result, path, False)
        return open_client(node, move_port).send(paths)


class SendDialog(QDialog):
    """Choose the node, read what will be sent and for whom, Send, then read the answer per object."""

    def __init__(self, result: ExportedExplanation, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Send explanation to PACS")
        self.result = result
        self.jobs = Jobs(self)
        self.finished.connect(self.jobs.stop)
        self.chooser = NodeChooser()
        source = result.source
        about = QFormLayout()
        about.addRow("PACS", self.chooser)
        about.addRow("Patient", QLabel(f"{person(str(source.get('PatientName', '')))}  "
                                       f"({source.get('PatientID', '') or 'no ID'})"))
        about.addRow("Study", QLabel(" · ".join(part for part in (date(str(source.get("StudyDate", ""))),
                                                                  str(source.get("StudyDescription", ""))) if part)))
        about.addRow("Explanation", QLabel(f"{result.method} of {result.target} ({result.score:.0%}), "
                                           f"model {result.model_name}"))
        notice = QLabel(IDENTIFIED)
        notice.setWordWrap(True)
        self.objects = QTreeWidget()
        self.objects.setHeaderLabels(["Object", "Result"])
        self.objects.setRootIsDecorated(False)
        for name, _file_name, _writer in OBJECTS:
            self.objects.addTopLevelItem(QTreeWidgetItem([name, "not sent yet"]))
        self.objects.resizeColumnToContents(0)
        self.status = QLabel()
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.send_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.send_button.clicked.connect(self.send)
        layout = QVBoxLayout(self)
        layout.addLayout(about)
        layout.addWidget(notice)
        layout.addWidget(self.objects)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self.resize(620, 380)

    def send(self) -> None:
        try:
            node = self.chooser.node()
        except PacsError as error:
            self.status.setText(str(error))
            return
        self.send_button.setEnabled(False)
        self.status.setText(f"Sending to {node.address()}…")
        move_port, result = self.chooser.settings.move_port, self.result
        self.jobs.start(lambda _job: send(node, move_port, result), self._sent, self._failed)

    def _sent(self, answers: list[Sent]) -> None:
        for k, answer in enumerate(answers):
            self.objects.topLevelItem(k).setText(1, f"{'sent' if answer.ok else 'not sent'}: {answer.message}")
        failed = sum(not answer.ok for answer in answers)
        self.status.setText(f"{len(answers) - failed} of {len(answers)} objects sent")
        self.send_button.setEnabled(True)

    def _failed(self, line: str) -> None:
        for k in range(self.objects.topLevelItemCount()):
            self.objects.topLevelItem(k).setText(1, "not sent")
        self.status.setText(f"Not sent: {line}".splitlines()[0])
        self.send_button.setEnabled(True)


class PacsSend(QObject):
    """The File menu item, enabled while a final explanation is on show (``on_screen`` gives it, else None)."""

    def __init__(self, window: QMainWindow, on_screen: Callable[[], ExportedExplanation | None]) -> None:
        super().__init__(window)
        self.window, self.on_screen = window, on_screen
        self.dialog: SendDialog | None = None
        menu = window.file_menu
        actions = menu.actions()
        after = actions.index(window.export_menu.menuAction()) + 1
        self.action = menu.addAction("Send explanation to &PACS…", self.open_dialog)
        if after < len(actions):
            menu.insertAction(actions[after], self.action)

    def open_dialog(self) -> None:
        result = self.on_screen()
        if result is None:
            self.window.statusBar().showMessage("Nothing to send: explain the image first", 10000)
            return
        self.dialog = SendDialog(result, self.window)
        self.dialog.open()
