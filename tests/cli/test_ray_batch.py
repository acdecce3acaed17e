"""``main.py explain PATH ... --out DIR --ray``: the batch command on a local Ray cluster (127.0.0.1).

Each run starts its own Ray instance, so the runs here are few and small: 30 phantoms, a small
convolutional model and coarse occlusion at a fixed batch size (the tuned batch size follows the
machine's speed, and with it the last bits of a map), with two workers on this 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests import dicom_factory as factory
from tests.model_factory import SmallCnn, card_for, export_model

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ("--method", "occlusion", "--window", "8", "--stride", "4", "--no-trust", "--batch-size", "16")
#: What may differ between two runs of the same images: how long each took.
TIMING = {"elapsed"}

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed: pip install -e '.[cluster]' (scripts/setup does)")


def command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), "explain", *args]


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A model, 30 phantoms and a copy of one, a file cut short in its pixels and one that is no DICOM at all."""
    root = tmp_path_factory.mktemp("archive")
    model = export_model(SmallCnn(), card_for(64, 64), root / "model")
    made = root / "made"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_phantoms.py"), "--out", str(made), "--count", "30",
                    "--seed", "19", "--rows", "128", "--workers", "2"], check=True, capture_output=True)
    inputs = root / "in"
    inputs.mkdir()
    for phantom in made.glob("*.dcm"):
        shutil.move(phantom, inputs / phantom.name)
    # A copy shares its UID with the original: its name is settled by the driver, in plan order.
    shutil.copy(inputs / "phantom-0003.dcm", inputs / "phantom-0003-copy.dcm")
    broken = [factory.write_truncated(inputs / "cut.dcm", keep=0.3), factory.write_junk(inputs / "junk.dcm")]
    return model, inputs, broken


@pytest.fixture(scope="module")
def plain(archive, tmp_path_factory):
    """The batch command on this machine alone: the reference."""
    model, inputs, _broken = archive
    out = tmp_path_factory.mktemp("plain") / "maps"
    return out, explain(str(inputs), "--model", str(model), *SETTINGS, "--out", str(out))


@pytest.fixture(scope="module")
def on_ray(archive, tmp_path_factory):
    """The same batch with --ray and two workers, then once more into the same folder."""
    model, inputs, _broken = archive
    out = tmp_path_factory.mktemp("ray") / "maps"
    args = (str(inputs), "--model", str(model), *SETTINGS, "--out", str(out), "--ray", "--workers", "2")
    first = explain(*args)
    times = {path.name: path.stat().st_mtime_ns for path in out.iterdir() if path.name != "summary.csv"}
    first_summary = summary(out)
    second = explain(*args, "--json")
    return out, first, times, second, first_summary


def summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as file:
        return [{key: value for key, value in row.items() if key not in TIMING} for row in csv.DictReader(file)]


def assert_same_results(out: Path, reference: Path, rows: list[dict]) -> None:
    """The same files, maps equal bit for bit, the same records and summary but for timings, no temporaries."""
    names = sorted(path.name for path in out.iterdir())
    assert names == sorted(path.name for path in reference.iterdir())
    assert not [name for name in names if name.startswith(".")], "no temporary file is left behind"
    for name in names:
        if name.endswith(".npz"):
            ours, theirs = np.load(out / name), np.load(reference / name)
            assert ours.files == theirs.files
            for key in ours.files:
                np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{name}: {key}", strict=True)
        elif name.endswith(".json") and name != "batch.json":
            ours, theirs = (json.loads((folder / name).read_text()) for folder in (out, reference))
            assert {k: v for k, v in ours.items() if k not in TIMING} == {
                k: v for k, v in theirs.items() if k not in TIMING}, name
    assert (out / "batch.json").read_text() == (reference / "batch.json").read_text()
    assert rows == summary(reference), "the same rows, in the same order"


def closing_lines(result: subprocess.CompletedProcess[str], out: Path) -> list[str]:
    """The summary's counts and each failure, as the run says them on stderr."""
    lines = [line for line in result.stderr.splitlines() if line.startswith(("failed: ", "33 images"))]
    return [line.replace(str(out), "DIR") for line in lines]


@needs_ray
def test_ray_batch_equals_the_plain_batch_and_reports_the_broken_files(archive, plain, on_ray):
    _model, _inputs, broken = archive
    reference, alone = plain
    out, first, _times, _second, rows = on_ray
    assert alone.returncode == first.returncode == 1, first.stderr
    assert first.stdout == "" and "Traceback" not in first.stderr
    assert closing_lines(first, out) == closing_lines(alone, reference)
    assert "33 images: 31 explained, 0 already done, 2 failed; summary in DIR/summary.csv" in closing_lines(first, out)
    for path in broken:
        assert sum(line.startswith(f"failed: {path}: ") for line in first.stderr.splitlines()) == 1
    assert_same_results(out, reference, rows)


@needs_ray
def test_a_second_run_on_ray_skips_everything(archive, on_ray):
    _model, _inputs, broken = archive
    out, _first, times, second, _rows = on_ray
    assert second.returncode == 1
    assert "33 images: 0 explained, 31 already done, 2 failed" in second.stderr
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir() if path.name != "summary.csv"} == times
    status = {json.loads(line)["path"]: json.loads(line)["status"] for line in second.stdout.splitlines()}
    assert set(status.values()) == {"skipped", "failed"}
    assert sorted(path for path, state in status.items() if state == "failed") == sorted(map(str, broken))


def descendants(pid: int) -> list[int]:
    """The processes started, directly or not, by ``pid``: a local Ray instance's are the driver's."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def explaining_worker(driver: int) -> int | None:
    """A worker process of this run that is explaining an image now (Ray names the process after the call)."""
    for pid in descendants(driver):
        try:
            title = (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::ImageWorker.explain"):
            return pid
    return None


@needs_ray
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes through /proc")
def test_a_worker_killed_mid_run_has_its_image_done_by_another(archive, plain, tmp_path):
    model, inputs, _broken = archive
    reference, alone = plain
    out = tmp_path / "maps"
    driver = subprocess.Popen(command(str(inputs), "--model", str(model), *SETTINGS, "--out", str(out), "--ray",
                                      "--workers", "2"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and driver.poll() is None and time.monotonic() < deadline:
        worker = explaining_worker(driver.pid)
        if worker is not None:
            os.kill(worker, signal.SIGKILL)
            killed = worker
        time.sleep(0.01)
    stdout, stderr = driver.communicate(timeout=300)
    assert killed is not None, f"the run ended before a worker could be killed: {stderr}"
    result = subprocess.CompletedProcess(driver.args, driver.returncode, stdout, stderr)
    assert "a Ray worker died explaining" in stderr and "trying again on another" in stderr, stderr
    assert result.returncode == alone.returncode == 1, stderr
    assert closing_lines(result, out) == closing_lines(alone, reference)
    assert_same_results(out, reference, summary(out))


def test_without_ray_the_flag_says_so_in_one_line(tmp_path):
    hide_ray = ("import sys, runpy; sys.modules['ray'] = None; sys.argv = ['main.py'] + sys.argv[1:]; "
                f"runpy.run_path({str(ROOT / 'main.py')!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", hide_ray, "explain", str(tmp_path), "--out", str(tmp_path / "maps"),
                             "--ray"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --ray needs Ray, the cluster extra: pip install -e '.[cluster]'"
    assert not (tmp_path / "maps").exists(), "nothing is made before the run can start"


@pytest.mark.parametrize(("resources", "device", "workers", "expected"), [
    ({"CPU": 16.0, "GPU": 4.0}, "auto", None, (4, {"num_gpus": 1, "num_cpus": 1})),
    ({"CPU": 16.0, "GPU": 1.0}, "cuda", 2, (2, {"num_gpus": 0.5, "num_cpus": 1})),
    ({"CPU": 16.0, "GPU": 4.0}, "cpu", None, (4, {"num_cpus": 4})),
    ({"CPU": 2.0}, "auto", None, (1, {"num_cpus": 2})),
    ({"CPU": 2.0}, "auto", 4, (4, {"num_cpus": 0.5})),
])
def test_one_worker_per_gpu_or_share_of_cores_and_every_worker_fits(resources, device, workers, expected):
    from cli.ray_batch import worker_slots

    class Cluster:
        @staticmethod
        def cluster_resources() -> dict:
            return resources

    assert worker_slots(Cluster, argparse.Namespace(device=device, workers=workers)) == expected
