"""Test set-up shared by every test package.

Qt runs on its offscreen platform, chosen here before anything imports Qt, so GUI tests
run headless and never open a window on a developer's screen. GUI tests get settings in
a temporary folder so they never read or change the reader's own (recent files, layout).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"


@pytest.fixture
def qt_settings(tmp_path: Path):
    """A settings file of the test's own; default QSettings locations point there too."""
    from PySide6.QtCore import QSettings

    folder = tmp_path / "settings"
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(folder))
    return QSettings(str(folder / "lightbox.ini"), QSettings.Format.IniFormat)
