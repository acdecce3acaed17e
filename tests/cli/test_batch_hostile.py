"""A batch's output folder under attack: it refuses files, reuses UIDs, holds leftovers and traps.

Each test builds the hostile folder or input and runs the real command: in a subprocess where the
situation can be made for real (tests run as root, for whom a chmod'ed folder is no obstacle),
in-process with a fault injected into the file system calls where it cannot (a full disk,
permission denied on one file).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from cli.batch import Job, is_result_file, path_digest, plan, settle
from cli.explain_command import explain_command
from cli.explain_outputs import OutputError
from dicom.series import open_paths
from tests import dicom_factory as factory
from tests.cli.test_batch import OCCLUSION, ROOT, uid_of
from tests.model_factory import RegionDetector, card_for, export_model

#: A subprocess that takes longer than this has hung.
HANG = 120


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A model, a radiograph, and another radiograph that reuses the first one's SOP Instance UID."""
    root = tmp_path_factory.mktemp("hostile")
    model = export_model(RegionDetector((8, 24, 30, 50)), card_for(48, 64), root / "model")
    image = factory.write_radiograph(root / "in" / "image.dcm", rows=60, cols=80, seed=1)
    impostor = factory.write_radiograph(root / "other" / "impostor.dcm", rows=60, cols=80, seed=7,
                                        extra={"SOPInstanceUID": uid_of(image)})
    return model, image, impostor


@pytest.fixture(scope="module")
def explained(inputs, tmp_path_factory) -> Path:
    """A folder holding the first image's results from an earlier run; copy it before changing it."""
    model, image, _impostor = inputs
    out = tmp_path_factory.mktemp("earlier") / "maps"
    result = explain(*run_args(model, out, image))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def earlier(explained, tmp_path) -> Path:
    """A copy of the folder of an earlier run, this test's own."""
    return Path(shutil.copytree(explained, tmp_path / "maps"))


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    """``main.py explain`` in a subprocess, failing the test instead of hanging it."""
    try:
        return subprocess.run([sys.executable, str(ROOT / "main.py"), "explain", *args], capture_output=True,
                              text=True, cwd=ROOT, timeout=HANG)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the command hung for {HANG} s")


def run_args(model: Path, out: Path, *paths: Path, formats: str = "npz") -> list[str]:
    return [*map(str, paths), "--model", str(model), *OCCLUSION, "--no-trust", "--format", formats,
            "--out", str(out)]


def rows_of(result: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    """The ``--json`` rows of a run, by source path."""
    return {row["path"]: row for row in map(json.loads, result.stdout.splitlines())}


def assert_refused(returncode: int, stderr: str, *fragments: str) -> str:
    """Exit status 2, no traceback, and exactly one ``error:`` line holding each fragment; that line."""
    assert returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], stderr
    return errors[0]


def no_temporaries(folder: Path) -> bool:
    return not [path for path in folder.iterdir() if path.name.endswith(".partial")]


# --------------------------------------------------------------------------------------------
# A folder that refuses files: one line, exit status 2
# --------------------------------------------------------------------------------------------


def test_a_file_where_the_folder_should_be(inputs, tmp_path):
    model, image, _impostor = inputs
    squatter = tmp_path / "maps"
    squatter.write_text("not a folder")
    result = explain(*run_args(model, squatter, image))
    assert_refused(result.returncode, result.stderr, str(squatter), "not a folder")
    assert squatter.read_text() == "not a folder"


def test_a_file_where_a_parent_folder_should_be(inputs, tmp_path):
    model, image, _impostor = inputs
    (tmp_path / "parent").write_text("a file")
    out = tmp_path / "parent" / "maps"
    result = explain(*run_args(model, out, image))
    assert_refused(result.returncode, result.stderr, str(out), "Not a directory")


def test_a_single_image_into_a_folder_that_cannot_be(inputs, tmp_path):
    model, image, _impostor = inputs
    (tmp_path / "parent").write_text("a file")
    out = tmp_path / "parent" / "map.npz"
    result = explain(str(image), "--model", str(model), *OCCLUSION, "--no-trust", "--out", str(out))
    assert_refused(result.returncode, result.stderr, f"cannot write {out}", "Not a directory")


def test_a_folder_in_the_way_of_the_summary_keeps_the_work_done(inputs, tmp_path):
    model, image, _impostor = inputs
    out = tmp_path / "maps"
    (out / "summary.csv").mkdir(parents=True)
    result = explain(*run_args(model, out, image))
    assert_refused(result.returncode, result.stderr, f"cannot write {out / 'summary.csv'}", "Is a directory")
    assert "1 image: 1 explained, 0 already done, 0 failed" in result.stderr
    assert (out / f"{uid_of(image)}.json").is_file() and no_temporaries(out)
    (out / "summary.csv").rmdir()
    again = explain(*run_args(model, out, image), "--json")
    assert again.returncode == 0 and rows_of(again)[str(image)]["status"] == "skipped"


def test_a_folder_in_the_way_of_a_result_stops_the_run(inputs, tmp_path):
    model, image, impostor = inputs
    out = tmp_path / "maps"
    (out / f"{uid_of(image)}.npz").mkdir(parents=True)
    result = explain(*run_args(model, out, image, impostor.parent))
    assert_refused(result.returncode, result.stderr, f"cannot write {out / uid_of(image)}.npz", "Is a directory")
    assert [path.name for path in out.glob("*.json")] == ["batch.json"], \
        "the run stopped at the first refusal; no image has a record"
    assert no_temporaries(out)


@contextmanager
def immutable(folder: Path) -> Iterator[None]:
    """``chattr +i`` on the folder while in the block: read-only even for root."""
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@contextmanager
def read_only_by_mode(folder: Path) -> Iterator[None]:
    """``chmod a-w`` on the folder while in the block: read-only for anyone but root."""
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder.chmod(0o555)
    try:
        yield
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("read_only", [immutable, read_only_by_mode])
def test_a_read_only_folder_of_earlier_results(inputs, earlier, read_only: Callable):
    model, image, impostor = inputs
    before = sorted(path.name for path in earlier.iterdir())
    with read_only(earlier):
        result = explain(*run_args(model, earlier, image, impostor))
    line = assert_refused(result.returncode, result.stderr, f"cannot write {earlier / 'summary.csv'}")
    assert line.endswith(("Operation not permitted", "Permission denied", "Read-only file system")), line
    assert sorted(path.name for path in earlier.iterdir()) == before


def refuse_replace(monkeypatch, name_ending: str, error: int) -> None:
    """``os.replace`` fails with ``error`` when it would put a file ending in ``name_ending`` in place."""
    real = os.replace

    def replace(source, target, *args, **kwargs):
        if os.fspath(target).endswith(name_ending):
            raise OSError(error, os.strerror(error), os.fspath(source))
        return real(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("name_ending, error", [
    ("batch.json", errno.EACCES),  # the settings, first thing written
    ("summary.csv", errno.EACCES),  # the summary, last
    ("{uid}.json", errno.EROFS),  # an image's record
    ("{uid}.png", errno.ENOSPC),  # an image's file
])
def test_permission_denied_on_any_file_of_the_folder(inputs, tmp_path, monkeypatch, capsys, name_ending, error):
    model, image, impostor = inputs
    out = tmp_path / "maps"
    name_ending = name_ending.format(uid=uid_of(image))
    refuse_replace(monkeypatch, name_ending, error)
    status = explain_command(run_args(model, out, image, impostor, formats="npz,png"))
    assert_refused(status, capsys.readouterr().err, "cannot write ", name_ending, os.strerror(error))
    assert no_temporaries(out)


def test_a_read_only_folder_is_found_before_any_work(inputs, earlier, monkeypatch, capsys):
    model, image, impostor = inputs
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == earlier:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(earlier / ".x.partial"))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr("cli.batch.explain_job", lambda *args: pytest.fail("an image was explained"))
    status = explain_command(run_args(model, earlier, image, impostor))
    assert_refused(status, capsys.readouterr().err, f"cannot write {earlier / 'summary.csv'}", "Permission denied")


def test_a_disk_that_fills_up_mid_write(inputs, tmp_path, monkeypatch, capsys):
    model, image, impostor = inputs
    out = tmp_path / "maps"
    written: list[str] = []

    def savez_compressed(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        written.append(file.name)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez_compressed", savez_compressed)
    status = explain_command(run_args(model, out, image, impostor.parent))
    assert_refused(status, capsys.readouterr().err, "cannot write ", "No space left on device")
    assert len(written) == 1, "the run stopped at the full disk instead of explaining every other image"
    assert sorted(path.name for path in out.iterdir()) == ["batch.json"]


# --------------------------------------------------------------------------------------------
# Another image with an explained image's SOP Instance UID
# --------------------------------------------------------------------------------------------


def test_an_impostor_uid_is_explained_under_its_own_name(inputs, earlier):
    model, image, impostor = inputs
    uid = uid_of(image)
    assert uid_of(impostor) == uid
    before = {path.name: path.read_bytes() for path in earlier.iterdir() if path.name != "summary.csv"}

    second = explain(*run_args(model, earlier, impostor), "--json")
    assert second.returncode == 0, second.stderr
    row = rows_of(second)[str(impostor)]
    assert row["status"] == "done", "another image reusing the UID must be explained, not skipped"
    assert row["name"].startswith(f"{uid}-") and row["name"] != uid
    record = json.loads((earlier / f"{row['name']}.json").read_text())
    assert record["path"] == str(impostor) and record["source_sha256"] == row["source_sha256"]
    assert (earlier / f"{row['name']}.npz").is_file()
    assert {name: (earlier / name).read_bytes() for name in before} == before, "the first image's results stay"

    third = explain(*run_args(model, earlier, image, impostor), "--json")
    assert third.returncode == 0, third.stderr
    rows = rows_of(third)
    assert {path: row["status"] for path, row in rows.items()} == {str(image): "skipped", str(impostor): "skipped"}
    assert (rows[str(image)]["name"], rows[str(impostor)]["name"]) == (uid, row["name"])


def test_a_file_changed_in_place_is_explained_again(inputs, earlier, tmp_path):
    model, image, impostor = inputs
    moved = tmp_path / "image.dcm"
    shutil.copy(image, moved)
    first = explain(*run_args(model, earlier, moved), "--json")
    assert rows_of(first)[str(moved)]["status"] == "skipped", "the same bytes anywhere are the same image"
    shutil.copy(impostor, moved)  # new pixels, same path, same UID
    second = explain(*run_args(model, earlier, moved), "--json")
    row = rows_of(second)[str(moved)]
    assert second.returncode == 0 and row["status"] == "done" and row["name"] != uid_of(image)
    assert json.loads((earlier / f"{uid_of(image)}.json").read_text())["path"] == str(image)


def only_job(path: Path) -> Job:
    """The one job of a single-frame file, with a made-up digest of its content."""
    (job,) = plan([frame for series in open_paths([path]).all_series() for frame in series.frames])
    return Job(job.frame, job.name, digest="ab" * 32)


#: What may sit where a record belongs, besides the image's own record.
OCCUPANTS: dict[str, Callable[[Path, dict], None]] = {
    "a record without a digest": lambda path, mine: path.write_text(
        json.dumps({key: value for key, value in mine.items() if key != "source_sha256"})),
    "a record of another frame": lambda path, mine: path.write_text(json.dumps({**mine, "frame": 1})),
    "a record of other content": lambda path, mine: path.write_text(json.dumps({**mine, "source_sha256": "cd" * 32})),
    "a FIFO": lambda path, _mine: os.mkfifo(path),
    "a folder": lambda path, _mine: path.mkdir(),
    "JSON nested too deep": lambda path, _mine: path.write_text("[" * 100_000),
}


@pytest.mark.parametrize("occupant", OCCUPANTS)
def test_a_name_held_by_anything_but_this_images_record_is_never_taken(inputs, tmp_path, occupant):
    _model, image, _impostor = inputs
    job = only_job(image)
    mine = {"source_sha256": job.digest, "frame": job.frame.index, "path": "elsewhere"}
    OCCUPANTS[occupant](tmp_path / f"{job.name}.json", mine)
    settled, earlier = settle(job, tmp_path, set())
    assert (settled.name, earlier) == (f"{job.name}-{'ab' * 8}", None)

    (tmp_path / f"{settled.name}.json").write_text(json.dumps(mine))
    assert settle(job, tmp_path, set()) == (settled, mine), "this image's own record, under its second name"
    claimed = {job.name}
    assert settle(job, tmp_path, claimed)[0] == settled and claimed == {job.name, settled.name}
    assert settle(job, tmp_path, claimed)[0].name.startswith(f"{settled.name}-"), "a copy: the path's digest too"

    for name in (settled.name, f"{settled.name}-{path_digest(image)[:8]}"):
        (tmp_path / f"{name}.json").write_text(json.dumps({**mine, "source_sha256": "ef" * 32}))
    with pytest.raises(OutputError, match="taken by other images' results"):
        settle(job, tmp_path, set())


# --------------------------------------------------------------------------------------------
# Leftovers and traps in the folder
# --------------------------------------------------------------------------------------------


def test_temporaries_of_a_killed_run_are_removed_and_nothing_else(inputs, earlier, tmp_path):
    model, image, _impostor = inputs
    uid = uid_of(image)
    ours = [f".{uid}.npz.abc12345.partial", f".{uid}.json.k3j4h5g6.partial", ".summary.csv.a1b2c3d4.partial",
            ".batch.json.zz_99xyz.partial", f".{uid}-frame2-0123456789abcdef-0123abcd.pm.dcm.q1w2e3r4.partial",
            ".file-0123456789abcdef.html.abcdefgh.partial"]
    theirs = [".notes.txt.abc12345.partial", f".{uid}.npz.partial", "keep.partial", f"{uid}.npz.abc12345.partial",
              ".DOE^JOHN.npz.abc12345.partial", f".{uid}.npz.abc12345.partial.bak"]
    for name in ours + theirs:
        (earlier / name).write_bytes(b"half")
    (earlier / f".{uid}.png.dir12345.partial").mkdir()
    outside = tmp_path / "precious.npz"
    outside.write_bytes(b"precious")
    (earlier / f".{uid}.sc.dcm.link1234.partial").symlink_to(outside)

    result = explain(*run_args(model, earlier, image))
    assert result.returncode == 0, result.stderr
    left = {path.name for path in earlier.iterdir()}
    assert not left & set(ours), "every temporary a run could have left is gone"
    assert left >= {*theirs, f".{uid}.png.dir12345.partial", f".{uid}.sc.dcm.link1234.partial"}
    assert outside.read_bytes() == b"precious"
    assert all(is_result_file(name[1:].rsplit(".", 2)[0]) for name in ours)


def test_a_second_run_into_a_folder_in_use_is_refused(inputs, earlier):
    model, image, _impostor = inputs
    stale = earlier / f".{uid_of(image)}.npz.abc12345.partial"  # as if the run holding it were writing it
    stale.write_bytes(b"half")
    handle = os.open(earlier, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        result = explain(*run_args(model, earlier, image))
    finally:
        os.close(handle)
    assert_refused(result.returncode, result.stderr, f"another run is writing to {earlier}")
    assert stale.read_bytes() == b"half"


def test_a_fifo_for_settings_refuses_without_hanging(inputs, earlier):
    model, image, _impostor = inputs
    (earlier / "batch.json").unlink()
    os.mkfifo(earlier / "batch.json")
    result = explain(*run_args(model, earlier, image))
    assert_refused(result.returncode, result.stderr, f"{earlier / 'batch.json'} was not written by a batch run")


@pytest.mark.parametrize("trap", ["fifo", "endless"])
def test_a_trap_for_a_record_is_not_read(inputs, earlier, trap):
    model, image, _impostor = inputs
    record = earlier / f"{uid_of(image)}.json"
    record.unlink()
    if trap == "fifo":
        os.mkfifo(record)
    else:
        record.symlink_to("/dev/zero")
    result = explain(*run_args(model, earlier, image), "--json")
    assert result.returncode == 0, result.stderr
    row = rows_of(result)[str(image)]
    assert row["status"] == "done" and row["name"] != uid_of(image), "the trap's name is left to it"

