"""Hostile DICOM input on the command line: no hang, no traceback, no file outside its folder.

Each test builds the attack in a temporary folder next to a good image and runs ``main.py info``
(or ``explain``) in a subprocess, with a timeout where a hang is the risk and an address-space
limit where memory is: a regression then fails the test instead of the machine. Every file gets
one line, and the good image is still described.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import RLELossless

from tests import dicom_factory as factory

ROOT = Path(__file__).resolve().parents[2]
#: Enough for the command and a legitimate image; far too little for any memory bomb.
MEMORY_LIMIT = 2 * 2**30
#: Far longer than any of these runs takes; a hang ends here instead of stalling the suite.
TIMEOUT = 120


def limit_memory() -> None:
    """Run in the child before ``main.py``: a bomb then ends in MemoryError, not in swapping."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_main(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                            cwd=ROOT, timeout=TIMEOUT, preexec_fn=limit_memory)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def info_json(*paths: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """The images and the errors ``info --json`` reports, by file name; strict JSON, nothing else."""
    result = run_main("info", "--json", *map(str, paths))
    document = json.loads(result.stdout, parse_constant=reject_constant)
    images = {Path(image["path"]).name: image for image in document["images"]}
    errors = {Path(error["path"]).name: error["error"] for error in document["errors"]}
    assert all(reason and "\n" not in reason for reason in errors.values())
    return images, errors


def test_pipes_and_endless_devices_are_refused_without_hanging(tmp_path):
    folder = tmp_path / "study"
    factory.write_image(folder / "good.dcm")
    os.mkfifo(folder / "pipe.dcm")
    os.symlink("/dev/zero", folder / "zero.dcm")
    os.symlink("/dev/urandom", folder / "random.dcm")
    factory.write_dicomdir(folder / "DICOMDIR", [["PIPE"], ["good.dcm"], ["zero.dcm"]])
    os.mkfifo(folder / "PIPE")
    images, errors = info_json(folder)
    assert set(images) == {"good.dcm"}
    assert errors["pipe.dcm"] == errors["PIPE"] == "not a regular file but a named pipe (FIFO); not read"
    assert "outside the opened folder" in errors["zero.dcm"] and "outside the opened folder" in errors["random.dcm"]

    images, errors = info_json(folder / "DICOMDIR")
    assert set(images) == {"good.dcm"}
    assert errors == {"PIPE": "not a regular file but a named pipe (FIFO); not read",
                      "zero.dcm": "a link leading outside the DICOMDIR's folder; not read"}

    # Opened by the reader, the link is followed: to a device, which is refused all the same.
    images, errors = info_json(folder / "zero.dcm", folder / "random.dcm", folder / "pipe.dcm")
    assert images == {}
    assert errors["zero.dcm"] == errors["random.dcm"] == "not a regular file but a character device; not read"


def test_a_symlink_loop_is_one_line_and_the_rest_goes_on(tmp_path):
    factory.write_image(tmp_path / "a_good.dcm")
    factory.write_image(tmp_path / "z_good.dcm")
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    os.symlink("self", tmp_path / "self")
    factory.write_dicomdir(tmp_path / "DICOMDIR", [["self"], ["a_good.dcm"]])
    images, errors = info_json(tmp_path, tmp_path / "loop1")
    assert set(images) == {"a_good.dcm", "z_good.dcm"}
    assert errors == {"loop1": "a symbolic link loop", "loop2": "a symbolic link loop", "self": "a symbolic link loop"}
    result = run_main("info", str(tmp_path))
    assert result.returncode == 0 and len(result.stderr.splitlines()) == 3, "one line a path, however reached"


@pytest.mark.parametrize("file_id", [
    ["..", "outside", "secret.dcm"],
    "../outside/secret.dcm",
    "..\\outside\\secret.dcm",
    ["IMAGES", "..", "..", "outside", "secret.dcm"],
    "{outside}/secret.dcm",
])
def test_dicomdir_ids_that_leave_its_folder_are_not_read(tmp_path, file_id):
    secret = factory.write_image(tmp_path / "outside" / "secret.dcm")
    file_id = file_id.format(outside=secret.parent) if isinstance(file_id, str) else file_id
    own = factory.write_image(tmp_path / "cd" / "IMAGES" / "IM1")
    dicomdir = factory.write_dicomdir(tmp_path / "cd" / "DICOMDIR", [file_id, ["IMAGES", "IM1"]])
    images, errors = info_json(dicomdir)
    assert [image["path"] for image in images.values()] == [str(own)]
    assert errors["DICOMDIR"].startswith("names a file outside its folder")


def test_links_out_of_the_opened_tree_are_followed_only_when_opened_themselves(tmp_path):
    secret = factory.write_image(tmp_path / "outside" / "secret.dcm")
    cd = tmp_path / "cd"
    factory.write_image(cd / "own.dcm")
    (cd / "IMAGES").mkdir()
    os.symlink(secret, cd / "IMAGES" / "LINK")
    os.symlink(secret.parent, cd / "elsewhere")
    factory.write_dicomdir(cd / "DICOMDIR", [["IMAGES", "LINK"]])
    images, errors = info_json(cd)
    assert set(images) == {"own.dcm"}
    assert errors["LINK"] == "a link leading outside the opened folder; open the link itself to read it"
    assert errors["elsewhere"] == errors["LINK"]

    images, errors = info_json(cd / "DICOMDIR")
    assert images == {} and errors == {"LINK": "a link leading outside the DICOMDIR's folder; not read"}

    images, errors = info_json(cd / "IMAGES" / "LINK")
    assert set(images) == {"LINK"} and errors == {}
    images, errors = info_json(cd / "elsewhere")
    assert set(images) == {"secret.dcm"} and errors == {}


def test_memory_bombs_are_refused_before_anything_is_allocated(tmp_path):
    factory.write_image(tmp_path / "good.dcm")
    factory.write_false_claim(tmp_path / "huge.dcm", rows=65535, columns=65535, frames=10_000)
    factory.write_false_claim(tmp_path / "one_huge_frame.dcm", rows=40000, columns=40000)
    factory.write_false_claim(tmp_path / "wide_samples.dcm", rows=8192, columns=8192, samples=3, bits_allocated=64)
    factory.write_false_claim(tmp_path / "hundred_million.dcm", frames=100_000_000)
    factory.write_false_claim(tmp_path / "few_bytes.dcm", rows=512, columns=512, frames=50_000)
    factory.write_false_claim(tmp_path / "rle.dcm", frames=90_000, transfer_syntax=RLELossless)
    factory.write_deflate_bomb(tmp_path / "deflated.dcm", 3 * 2**30)
    factory.write_false_claim(tmp_path / "within_budget.dcm", rows=10000, columns=10000)  # 191 MiB, 32 bytes held
    images, errors = info_json(tmp_path)
    assert set(images) == {"good.dcm"}
    for name in ("huge.dcm", "one_huge_frame.dcm", "wide_samples.dcm"):
        assert errors[name].startswith("each frame would take") and "256 MiB" in errors[name]
    assert errors["hundred_million.dcm"] == "claims 100000000 frames, more than the 100000 a file may have"
    for name in ("few_bytes.dcm", "rle.dcm"):
        assert "but holds only" in errors[name]
    assert errors["deflated.dcm"] == "the deflated data set inflates to more than 256 MiB; not read"
    assert errors["within_budget.dcm"].startswith("cannot decode pixels: The number of bytes of pixel data is less")


def test_a_failing_multiframe_file_is_one_failure(tmp_path):
    factory.write_false_claim(tmp_path / "cine.dcm", rows=64, columns=64, frames=10_000)
    result = run_main("info", str(tmp_path))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{tmp_path / 'cine.dcm'}: error: claims 10000 frames of 64 x 64 pixels, 16 bits but holds")


def test_large_regular_files_are_capped(tmp_path):
    with open(tmp_path / "sparse_5g.dcm", "wb") as file:
        file.truncate(5 * 2**30)  # sparse: no disk is used
    with open(tmp_path / "zeros_2g.dcm", "wb") as file:
        file.truncate(2 * 2**30)  # eight million empty elements, if parsed as such
    factory.write_image(tmp_path / "good.dcm")
    images, errors = info_json(tmp_path)
    assert set(images) == {"good.dcm"}
    assert errors["sparse_5g.dcm"] == "file too large: 5 GiB, more than 4 GiB; not read"
    assert errors["zeros_2g.dcm"] == "the header needs more than 1000000 reads; not read"


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # writing them is the point
def test_info_json_stays_strict_for_values_that_are_not_finite(tmp_path):
    factory.write_image(tmp_path / "slope_1e308.dcm", modality="CT", extra={"RescaleSlope": "1e308",
                                                                          "RescaleIntercept": "0"})
    factory.write_image(tmp_path / "slope_nan.dcm", modality="CT", extra={"RescaleSlope": "NaN", "RescaleIntercept": "0"})
    factory.write_image(tmp_path / "intercept_inf.dcm", modality="CT", extra={"RescaleSlope": "1",
                                                                            "RescaleIntercept": "-Infinity"})
    factory.write_image(tmp_path / "window_nan.dcm", windows=[(40, 400)], extra={"WindowCenter": "NaN"})
    factory.write_float_image(tmp_path / "float_nan.dcm", np.array([[0, 1], [np.nan, np.inf]], np.float32))
    result = run_main("info", "--json", str(tmp_path))
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    images, errors = info_json(tmp_path)
    assert errors == {}
    assert images["slope_1e308.dcm"]["max"] is None and images["slope_1e308.dcm"]["min"] == 0
    for name in ("slope_nan.dcm", "intercept_inf.dcm", "float_nan.dcm"):
        assert images[name]["min"] is None and images[name]["max"] is None
    assert images["window_nan.dcm"]["window"] is None and images["window_nan.dcm"]["max"] > 0

    text = run_main("info", str(tmp_path))
    assert text.returncode == 0 and "slope_nan.dcm: CT 64x64 x1 MONOCHROME2 W/L none range not finite" in text.stdout


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_explain_refuses_an_image_whose_values_are_not_finite(tmp_path):
    image = factory.write_radiograph(tmp_path / "dx.dcm", rows=256, cols=256,
                                     extra={"RescaleSlope": "NaN", "RescaleIntercept": "0"})
    out = tmp_path / "result.npz"
    result = run_main_unlimited("explain", str(image), "--out", str(out))
    assert result.returncode == 2 and not out.exists()
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "not all finite numbers" in line


def run_main_unlimited(*args: str) -> subprocess.CompletedProcess[str]:
    """``main.py`` without the memory limit: torch reserves more address space than it uses."""
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                            cwd=ROOT, timeout=TIMEOUT)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_file_names_cannot_break_the_one_line_messages(tmp_path):
    factory.write_junk(tmp_path / "two\nlines.dcm")
    factory.write_junk(Path(os.fsdecode(bytes(tmp_path) + b"/latin1-\xe9.dcm")))
    factory.write_image(tmp_path / "good\x1b[2J.dcm")
    result = run_main("info", str(tmp_path))
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 1 and "good\\x1b[2J.dcm" in result.stdout
    assert len(result.stderr.splitlines()) == 2 and "two\\nlines.dcm" in result.stderr


def test_a_decoder_panic_prints_no_backtrace(tmp_path):
    factory.write_rle_overrun(tmp_path / "rle.dcm")
    result = run_main("info", str(tmp_path))
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [f"{tmp_path / 'rle.dcm'}: OT 64x64 x1 MONOCHROME2 W/L none range 0..0"]


def test_a_folder_nested_too_deep_for_recursion_is_walked(tmp_path):
    folders = [tmp_path / "d"]
    for _ in range(1100):
        folders.append(folders[-1] / "d")
    try:
        for folder in folders:  # one at a time: pathlib makes parents recursively
            folder.mkdir()
        factory.write_image(folders[-1] / "bottom.dcm")
        images, errors = info_json(tmp_path)
        assert set(images) == {"bottom.dcm"} and errors == {}
    finally:  # from the bottom up: removing it recursively would exhaust the cleaner's stack
        (folders[-1] / "bottom.dcm").unlink(missing_ok=True)
        for folder in reversed(folders):
            if folder.is_dir():
                folder.rmdir()
