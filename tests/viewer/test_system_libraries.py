"""Qt's system libraries named in one line before Qt can abort the process for want of one."""

from __future__ import annotations

import main
from viewer import system_libraries
from viewer.system_libraries import XCB_LIBRARIES, install_line, missing_packages


def without(*libraries: str):
    """A loader that cannot find ``libraries``, as on a fresh desktop."""
    return lambda library: library not in libraries


def test_every_missing_package_is_named_once_in_a_stable_order(monkeypatch):
    monkeypatch.setattr(system_libraries, "loads", without("libxcb-keysyms.so.1", "libxcb-cursor.so.0",
                                                           "libglib-2.0.so.0", "libgthread-2.0.so.0"))
    assert missing_packages() == ["libglib2.0-0", "libxcb-cursor0", "libxcb-keysyms1"]
    assert missing_packages(xcb=False) == ["libglib2.0-0"]


def test_the_plugin_libraries_the_reporter_installed_are_all_checked():
    reported = {"libxcb-cursor0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1", "libxcb-render-util0",
                "libxkbcommon-x11-0", "libxcb-randr0", "libxcb-shape0", "libxcb-xkb1"}
    assert reported <= set(XCB_LIBRARIES.values())  # libxcb-xinerama0 is Qt 5's; Qt 6 does not load it


def test_main_prints_the_one_line_instead_of_starting_qt(monkeypatch, capsys):
    monkeypatch.setattr(system_libraries, "loads", without("libxcb-icccm.so.4"))
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert main.gui_command([]) == 1
    assert capsys.readouterr().err.strip() == install_line(["libxcb-icccm4"])


def test_x11_libraries_are_checked_only_where_qt_starts_on_x11(monkeypatch):
    monkeypatch.setattr(system_libraries, "loads", without(*XCB_LIBRARIES))
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    assert system_libraries.uses_xcb({"XDG_SESSION_TYPE": "x11"})
    assert not system_libraries.uses_xcb({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"})
    assert missing_packages(xcb=False) == []
