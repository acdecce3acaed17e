"""What the packaging tests share: running a built app as a user would, and reading its screenshots.

The app runs with a bare environment (no virtual environment, no Python paths of ours) and,
where ``unshare`` can take it away, with no network at all (elsewhere, with its proxies pointing
nowhere), so a start that reaches for either fails here rather than on a user's machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def offline_prefix() -> tuple[str, ...]:
    """``unshare --net``, which runs a command with no network at all, where this machine allows it."""
    if shutil.which("unshare") is None:
        return ()
    trial = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    return ("unshare", "--net") if trial.returncode == 0 else ()


OFFLINE = offline_prefix()


def bare_environment(home: Path, platform: str = "offscreen") -> dict[str, str]:
    """This process's environment less anything of Python, Qt or the loader's paths; Qt on ``platform``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "VIRTUAL_ENV", "QT_", "LD_"))}
    env.update(QT_QPA_PLATFORM=platform, HOME=str(home))
    # Where unshare cannot take the network away, a client that honours proxies reaches nowhere.
    nowhere = "http://127.0.0.1:9"
    env.update(http_proxy=nowhere, https_proxy=nowhere, all_proxy=nowhere, HTTP_PROXY=nowhere, HTTPS_PROXY=nowhere,
               ALL_PROXY=nowhere, no_proxy="", NO_PROXY="")
    return env


def run_program(program: Path, *args: str, cwd: Path, platform: str = "offscreen",
                inside: Sequence[str] = OFFLINE, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``program`` with a bare environment, under ``inside``: by default a command that takes the network away."""
    return subprocess.run([*inside, str(program), *args], capture_output=True, text=True, cwd=cwd,
                          env=bare_environment(cwd, platform), timeout=timeout)


def heat_pixels(picture: np.ndarray) -> np.ndarray:
    """Where the picture is strongly coloured: the heat overlay's colours, not grey anatomy."""
    channels = picture[..., :3].astype(int)
    return channels.max(axis=2) - channels.min(axis=2) > 30


def anatomy_pixels(picture: np.ndarray) -> np.ndarray:
    """Where the picture is grey and neither black nor white: the radiograph itself."""
    channels = picture[..., :3].astype(int)
    return (channels.max(axis=2) - channels.min(axis=2) < 8) & (channels.mean(axis=2) > 40) & (channels.mean(axis=2) < 235)
