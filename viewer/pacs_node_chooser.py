"""The node chooser of the PACS windows: a configured node by name, or an address typed in."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QWidget

from pacs.errors import PacsError
from pacs.nodes import Node, PacsSettings, load_settings, parse_node

PLACEHOLDER = "node name, AET@HOST:PORT or http(s):// URL"


class NodeChooser(QComboBox):
    """An editable list of the configured nodes; a typed ``AET@HOST:PORT`` or URL works too, as on the command line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEditable(True)
        self.setMinimumContentsLength(28)
        self.lineEdit().setPlaceholderText(PLACEHOLDER)
        self.settings = PacsSettings()
        self.reload()

    def reload(self) -> str:
        """Read the settings again (the nodes dialog may have changed them); '' or why they cannot be read."""
        chosen = self.currentText()
        try:
            self.settings = load_settings()
        except PacsError as error:
            self.settings = PacsSettings()
            return str(error)
        finally:
            self.clear()
            self.addItems([node.name for node in self.settings.nodes])
            if chosen:
                self.setCurrentText(chosen)
        return ""

    def node(self) -> Node:
        """The node chosen; PacsError with one line when the text names none."""
        text = self.currentText().strip()
        if not text:
            raise PacsError("choose a PACS node, or configure one with PACS nodes…")
        return parse_node(text, self.settings)
