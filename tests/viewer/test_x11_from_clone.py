"""The README's first command on a real X11 display, from a clean clone, as a new user runs it.

A clone holds only what is committed, so a start that relies on an ignored or generated file
fails here. The clone borrows this checkout's ``.venv/`` (a link) rather than installing one, to
stay within a minute. The X server is Xvfb (``scripts/setup`` installs it as root); the window
is found by its title with ``xdotool`` and the screen is read back from the X server itself, so
what is checked is what the display shows, not a picture the app drew for itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.packaging.test_built_app import anatomy_pixels

ROOT = Path(__file__).resolve().parents[2]
#: Reads the X server's whole screen into a PNG, with Qt's own X11 plugin.
GRAB_SCREEN = ("import sys; from PySide6.QtGui import QGuiApplication; app = QGuiApplication([]); "
               "sys.exit(0 if app.primaryScreen().grabWindow(0).save(sys.argv[1]) else 1)")

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("Xvfb", "xdotool", "git")) or not (ROOT / ".git").exists(),
    reason="needs Xvfb and xdotool (scripts/setup installs them as root) and a git checkout")


@pytest.fixture
def display(tmp_path):
    """A private X server; its display name, e.g. ``:12``."""
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    yield f":{number}"
    server.terminate()
    server.wait(10)


def clean_clone(folder: Path) -> Path:
    """This repository's HEAD cloned into ``folder``, with this checkout's environment linked in."""
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder)], check=True)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


def screen_shows_the_image(env: dict[str, str], picture: Path, seconds: float) -> bool:
    """Read the screen back until the radiograph is on it, or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        grabbed = subprocess.run([sys.executable, "-c", GRAB_SCREEN, str(picture)], env=env, capture_output=True)
        if grabbed.returncode == 0 and anatomy_pixels(np.asarray(Image.open(picture).convert("RGB"))).mean() > 0.1:
            return True
        time.sleep(0.5)
    return False


def test_the_readme_command_opens_a_window_with_the_demo_from_a_clean_clone(tmp_path, display):
    clone = clean_clone(tmp_path / "lightbox")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("QT_", "PYTHON", "WAYLAND"))}
    env.update(DISPLAY=display, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"), QT_QPA_PLATFORM="xcb")
    log = tmp_path / "app.log"
    with log.open("w") as output:
        app = subprocess.Popen([str(clone / ".venv/bin/python"), "main.py"], cwd=clone, env=env,
                               stdout=output, stderr=subprocess.STDOUT)
    try:
        found = subprocess.run(["timeout", "40", "xdotool", "search", "--sync", "--onlyvisible", "--name", "Lightbox"],
                               env=env, capture_output=True, text=True)
        assert found.returncode == 0 and found.stdout.strip(), log.read_text()
        assert screen_shows_the_image(env, tmp_path / "screen.png", 30), log.read_text()
    finally:
        app.terminate()
        app.wait(20)
