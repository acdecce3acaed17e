"""QtGui for Lightbox's bundle: the standard collection, less the plugins a desktop viewer never loads.

Replaces PyInstaller's hook of the same name. Dropped: the platform themes (the viewer draws
its own Fusion style and dark palette, and the GTK theme alone drags in GTK, Cairo and Pango),
the embedded-device platforms and input drivers (eglfs, linuxfb, vnc, evdev). Kept: the xcb
and Wayland platforms for desktops, offscreen for headless screenshots.
"""

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

_KEEP_PLATFORMS = ("libqxcb.so", "libqwayland.so", "libqoffscreen.so")
_DROP_PLUGIN_TYPES = ("platformthemes", "egldeviceintegrations", "generic")


def _wanted(source: str, destination: str) -> bool:
    destination = destination.replace("\\", "/")
    plugin_type = destination.rsplit("/plugins/", 1)[-1] if "/plugins/" in destination else ""
    if plugin_type == "platforms":
        return source.endswith(_KEEP_PLATFORMS)
    return plugin_type not in _DROP_PLUGIN_TYPES


hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
binaries = [(source, destination) for source, destination in binaries if _wanted(source, destination)]
