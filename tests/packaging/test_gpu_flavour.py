"""The GPU flavour's build path, checked without building it, and the device it names on the status line.

``scripts/build_app --cuda`` downloads several GB and is never run in CI; its ``--dry-run`` prints
every command it would run, which is what these tests read. They are quick and run everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from explain.devices import describe

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [ROOT / "scripts" / "build_app", ROOT / "scripts" / "build_deb"]


def script(*args: str, ci: bool = False) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run([str(ROOT / "scripts" / args[0]), *args[1:]], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def test_cuda_build_uses_a_venv_of_its_own_with_torchs_cuda_wheel_and_names_the_package_for_it():
    result = script("build_app", "--cuda", "--deb", "--dry-run", ci=True)  # a dry run is allowed in CI
    assert result.returncode == 0, result.stderr
    commands = result.stdout.splitlines()
    assert any("build/venv-cuda/bin/python -m pip install" in line and "torch==2.13.0+cu128" in line
               and "--index-url https://download.pytorch.org/whl/cu128" in line for line in commands)
    assert any(line.startswith("+ build/venv-cuda/bin/pyinstaller") and "--distpath dist/cuda" in line
               for line in commands)
    assert "+ scripts/build_deb --cuda" in commands
    assert any("LIGHTBOX_DEB=dist/lightbox-cuda_0.1.0_amd64.deb" in line for line in commands)
    assert not any(".venv/bin/python -m pip" in line or "scripts/setup" in line for line in commands), \
        "the CPU build's .venv/ is left alone"
    assert script("build_deb", "--cuda", "--dry-run").stdout.splitlines()[1:] == [
        "  dist/lightbox-cuda_0.1.0_amd64.deb", "  dist/lightbox-cuda-0.1.0-linux-x86_64.tar.gz"]


def test_another_cuda_tag_and_a_wrong_one():
    assert "torch==2.13.0+cu126" in script("build_app", "--cuda=cu126", "--dry-run").stdout
    wrong = script("build_app", "--cuda=12.6", "--dry-run")
    assert wrong.returncode == 2 and "expected a tag such as cu128" in wrong.stderr


def test_the_cuda_build_is_refused_in_ci():
    refused = script("build_app", "--cuda", ci=True)
    assert refused.returncode == 1 and "never built in CI" in refused.stderr


def test_the_cpu_build_and_its_package_stay_as_they_were():
    commands = script("build_app", "--deb", "--dry-run").stdout.splitlines()
    assert "+ scripts/setup" in commands and "+ scripts/build_deb" in commands
    assert any(line.startswith("+ .venv/bin/pyinstaller") and "--distpath dist " in line for line in commands)
    assert script("build_deb", "--dry-run").stdout.splitlines()[1] == "  dist/lightbox_0.1.0_amd64.deb"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="no shellcheck (apt-get install shellcheck)")
def test_the_build_scripts_are_shellcheck_clean():
    result = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_status_line_names_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert describe(torch.device("cuda")) == "CUDA (NVIDIA H200)"
    assert describe(torch.device("cuda", 0)) == "CUDA (NVIDIA H200)"
    assert describe(torch.device("cpu")) == "CPU"
