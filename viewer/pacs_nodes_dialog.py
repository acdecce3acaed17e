"""File > PACS nodes: the PACS Lightbox knows, edited in place, with a Verify button.

A node is DIMSE (AE title, host, port, our calling AE, TLS) or DICOMweb (a base URL with an
optional user). The list goes to the PACS settings file; a typed password goes to the system
keyring only, through :func:`pacs.nodes.keep_password`, never to that file.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from pacs.client import PacsClient, open_client
from pacs.errors import PacsError
from pacs.nodes import DEFAULT_CALLING_AE, Node, keep_password, load_settings, save_settings
from viewer.pacs_job import Jobs

KINDS = ("DIMSE (AE title, host, port)", "DICOMweb (base URL)")


def client_for(node: Node, typed_password: str) -> PacsClient:
    """The node's client, with the password just typed (not yet in the keyring) when there is one."""
    if node.is_web and typed_password:
        from pacs.web import WebClient

        return WebClient(node, typed_password)
    return open_client(node)


class NodeForm(QWidget):
    """The fields of one node; :meth:`node` reads them back, PacsError when they make no node."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = QLineEdit()
        self.kind = QComboBox()
        self.kind.addItems(KINDS)
        self.ae_title, self.host, self.calling_ae = QLineEdit(), QLineEdit(), QLineEdit(DEFAULT_CALLING_AE)
        self.ae_title.setMaxLength(16)
        self.calling_ae.setMaxLength(16)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(104)
        self.tls = QCheckBox("TLS (the certificate is verified)")
        self.ca_file = QLineEdit()
        self.ca_file.setPlaceholderText("the system's certificates")
        self.url, self.username, self.password = QLineEdit(), QLineEdit(), QLineEdit()
        self.url.setPlaceholderText("https://pacs.hospital/dicom-web")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("kept in the system keyring")

        dimse, web = QWidget(), QWidget()
        dimse_form, web_form = QFormLayout(dimse), QFormLayout(web)
        for label, editor in (("AE title", self.ae_title), ("Host", self.host), ("Port", self.port),
                              ("Our AE title", self.calling_ae), ("", self.tls), ("CA file", self.ca_file)):
            dimse_form.addRow(label, editor)
        for label, editor in (("Base URL", self.url), ("User", self.username), ("Password", self.password)):
            web_form.addRow(label, editor)
        self.pages = QStackedWidget()
        self.pages.addWidget(dimse)
        self.pages.addWidget(web)
        self.kind.currentIndexChanged.connect(self.pages.setCurrentIndex)
        top = QFormLayout()
        top.addRow("Name", self.name)
        top.addRow("Kind", self.kind)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.pages)

    def show_node(self, node: Node) -> None:
        self.name.setText(node.name)
        self.kind.setCurrentIndex(1 if node.is_web else 0)
        self.ae_title.setText(node.ae_title)
        self.host.setText(node.host)
        self.port.setValue(node.port)
        self.calling_ae.setText(node.calling_ae)
        self.tls.setChecked(node.tls)
        self.ca_file.setText(node.ca_file)
        self.url.setText(node.url)
        self.username.setText(node.username)
        self.password.clear()

    def node(self, template: Node) -> Node:
        """The node the fields describe, keeping what they do not show (the time-out) from ``template``."""
        name = self.name.text().strip()
        if not name:
            raise PacsError("a node needs a name")
        if self.kind.currentIndex() == 1:
            url = self.url.text().strip().rstrip("/")
            if not url.lower().startswith(("http://", "https://")):
                raise PacsError(f"{name}: a DICOMweb base URL starts with http:// or https://")
            return dataclasses.replace(template, name=name, url=url, username=self.username.text().strip(),
                                       ae_title="", host="", tls=False, ca_file="")
        ae_title, host = self.ae_title.text().strip(), self.host.text().strip()
        if not ae_title or not host:
            raise PacsError(f"{name}: a DIMSE node needs an AE title and a host")
        return dataclasses.replace(template, name=name, url="", username="", ae_title=ae_title, host=host,
                                   port=self.port.value(), calling_ae=self.calling_ae.text().strip() or
                                   DEFAULT_CALLING_AE, tls=self.tls.isChecked(), ca_file=self.ca_file.text().strip())


class PacsNodesDialog(QDialog):
    """The node list beside the form of the node selected; Save writes the settings and keeps passwords."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PACS nodes")
        self.jobs = Jobs(self)
        self.finished.connect(self.jobs.stop)
        self.settings = load_settings()
        self.nodes = list(self.settings.nodes)
        self.passwords: dict[str, str] = {}
        self.current = -1
        self.list = QListWidget()
        self.list.setMaximumWidth(180)
        self.form = NodeForm()
        self.add_button, self.remove_button = QPushButton("Add"), QPushButton("Remove")
        self.verify_button = QPushButton("Verify")
        self.verify_button.setToolTip("C-ECHO for DIMSE, a QIDO-RS query for DICOMweb")
        self.status = QLabel()
        self.status.setWordWrap(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Close)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)

        row = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.verify_button):
            row.addWidget(button)
        row.addStretch()
        left = QVBoxLayout()
        left.addWidget(self.list)
        main = QHBoxLayout()
        main.addLayout(left)
        main.addWidget(self.form, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(main)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

        self.add_button.clicked.connect(self.add)
        self.remove_button.clicked.connect(self.remove)
        self.verify_button.clicked.connect(self.verify)
        self.list.currentRowChanged.connect(self._select)
        self.list.addItems([node.name for node in self.nodes])
        if self.nodes:
            self.list.setCurrentRow(0)
        else:
            self.add()

    def commit(self) -> bool:
        """Take the form into the node selected; False (and why, in the status) when it makes no node."""
        if self.current < 0:
            return True
        try:
            node = self.form.node(self.nodes[self.current])
        except PacsError as error:
            self.say(str(error))
            return False
        if any(other.name == node.name for k, other in enumerate(self.nodes) if k != self.current):
            self.say(f"there is another node named {node.name}")
            return False
        self.nodes[self.current] = node
        self.list.item(self.current).setText(node.name)
        if self.form.password.text():
            self.passwords[node.name] = self.form.password.text()
        return True

    def _select(self, row: int) -> None:
        if row == self.current:
            return
        if not self.commit():
            self.list.blockSignals(True)
            self.list.setCurrentRow(self.current)
            self.list.blockSignals(False)
            return
        self.current = row
        if row >= 0:
            self.form.show_node(self.nodes[row])

    def add(self) -> None:
        if not self.commit():
            return
        names = {node.name for node in self.nodes}
        name = next(f"pacs{k}" for k in range(1, len(names) + 2) if f"pacs{k}" not in names)
        self.nodes.append(Node(name=name))
        self.list.addItem(name)
        self.list.setCurrentRow(len(self.nodes) - 1)

    def remove(self) -> None:
        row = self.current
        if row < 0:
            return
        self.current = -1
        del self.nodes[row]
        self.list.takeItem(row)
        if not self.nodes:
            self.form.show_node(Node(name=""))

    def verify(self) -> None:
        """C-ECHO or QIDO ping in a job; the answer, or why there is none, in one line."""
        if not self.commit():
            return
        node, typed = self.nodes[self.current], self.form.password.text()
        self.verify_button.setEnabled(False)
        self.say(f"Verifying {node.address()}…")
        self.jobs.start(lambda _job: client_for(node, typed).verify(), self._verified,
                        lambda line: self._verified(f"Verify failed: {line}"))

    def _verified(self, line: object) -> None:
        self.verify_button.setEnabled(True)
        self.say(str(line))

    def save(self) -> bool:
        """Write the nodes to the settings file and the typed passwords to the keyring; False when that fails."""
        if not self.commit():
            return False
        try:
            for node in self.nodes:
                if node.username and node.name in self.passwords:
                    keep_password(node, self.passwords[node.name])
            save_settings(dataclasses.replace(self.settings, nodes=self.nodes))
        except (PacsError, OSError) as error:
            self.say(f"Not saved: {error}")
            return False
        self.passwords.clear()
        self.accept()
        return True

    def say(self, text: str) -> None:
        self.status.setText(text)

