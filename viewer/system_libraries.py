"""The system libraries Qt's platform plugins load, checked before Qt is, and the packages that hold them.

PySide6's wheels carry Qt but not the X11 and OpenGL libraries below it. When one is missing
Qt aborts the whole process with a message that names one library at a time, so a fresh
desktop takes several rounds to get going. Loading each library first (the dynamic loader
finds them as Qt's would) names every missing Debian/Ubuntu package at once, in one line
that ``scripts/setup`` and ``main.py`` both print. This module imports neither Qt nor
anything else of ours, so it runs before either. The lists are the ``NEEDED`` entries of
PySide6's ``libQt6Gui``, ``libQt6DBus``, ``libQt6XcbQpa`` and ``plugins/platforms/libqxcb.so``
(``readelf -d``), less the C and C++ runtimes.

    python -m viewer.system_libraries            # the packages to install, space-separated
    python -m viewer.system_libraries --line     # the one line to print, empty when none
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Mapping

#: Every Qt platform needs these (libQt6Gui, libQt6DBus): library file -> Debian package.
GUI_LIBRARIES = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
}
#: The X11 platform plugin (xcb) needs these too; the first six are missing on many desktops.
XCB_LIBRARIES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
}


def uses_xcb(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Qt will start on X11: asked for, or by default outside a Wayland session."""
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(";")[0].startswith("xcb")
    return not (environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY"))


def loads(library: str) -> bool:
    """Whether the dynamic loader finds and loads ``library``, as it would for Qt."""
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def missing_packages(xcb: bool = True) -> list[str]:
    """The packages to install for Qt to start (on X11 with ``xcb``), in a stable order; empty on
    other systems than Linux, whose wheels carry what Qt needs."""
    if platform.system() != "Linux":
        return []
    wanted = {**GUI_LIBRARIES, **(XCB_LIBRARIES if xcb else {})}
    return sorted({package for library, package in wanted.items() if not loads(library)})


def install_line(packages: list[str]) -> str:
    """The one line that names what to install, the same from ``scripts/setup`` and ``main.py``."""
    return (f"error: Qt needs system libraries that are missing; install them with: "
            f"sudo apt-get install {' '.join(packages)}")


def main(argv: list[str]) -> int:
    packages = missing_packages()
    if packages:
        print(install_line(packages) if "--line" in argv else " ".join(packages))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
