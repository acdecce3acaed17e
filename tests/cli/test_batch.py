"""``main.py explain PATH ... --out DIR``: a whole folder, broken files reported, runs that resume."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from cli.batch import Job, file_sha256, plan, settle
from cli.explain_outputs import replace_atomically
from dicom.series import open_paths
from tests import dicom_factory as factory
from tests.model_factory import RegionDetector, card_for, export_model

ROOT = Path(__file__).resolve().parents[2]
OCCLUSION = ("--method", "occlusion", "--window", "8", "--stride", "4")


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "explain", *args],
                          capture_output=True, text=True, cwd=ROOT)


def uid_of(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A model, two good radiographs (one in a sub-folder) and two broken files."""
    root = tmp_path_factory.mktemp("batch")
    model = export_model(RegionDetector((8, 24, 30, 50)), card_for(48, 64), root / "model")
    inputs = root / "in"
    good = [factory.write_radiograph(inputs / "first.dcm", rows=120, cols=200, seed=1),
            factory.write_radiograph(inputs / "ward" / "second.dcm", rows=96, cols=96, seed=2,
                                     photometric="MONOCHROME1")]
    broken = [factory.write_truncated(inputs / "ward" / "cut.dcm", keep=0.3),
              factory.write_junk(inputs / "junk.dcm")]
    return model, inputs, good, broken


@pytest.fixture(scope="module")
def two_runs(study, tmp_path_factory):
    """The same batch run twice into one folder; the files' times after the first run."""
    model, inputs, _good, _broken = study
    out = tmp_path_factory.mktemp("results") / "maps"
    args = (str(inputs), "--model", str(model), *OCCLUSION, "--format", "npz,png", "--out", str(out))
    first = explain(*args)
    times = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    with open(out / "summary.csv", newline="") as file:
        summary = {row["path"]: row for row in csv.DictReader(file)}
    second = explain(*args, "--json")
    return out, first, times, second, summary


def test_batch_explains_every_good_image_and_reports_each_broken_one(study, two_runs):
    model, _inputs, good, broken = study
    out, first, _times, _second, rows = two_runs
    assert first.returncode == 1, "some files failed: exit status 1"
    assert first.stdout == "", "without --json stdout stays empty; progress and summary go to stderr"
    assert "4 images: 2 explained, 0 already done, 2 failed" in first.stderr
    for path in broken:
        lines = [line for line in first.stderr.splitlines() if line.startswith(f"failed: {path}: ")]
        assert len(lines) == 1, first.stderr
    assert "Traceback" not in first.stderr
    for path in good:
        uid = uid_of(path)
        for ending in (".npz", ".png", ".json"):
            assert (out / f"{uid}{ending}").is_file()
    assert not list(out.glob(".*")), "no temporary file is left behind"

    # Each map is the one the single-image command makes for that file.
    single = out.parent / "single.npz"
    assert explain(str(good[1]), "--model", str(model), *OCCLUSION, "--no-trust", "--out", str(single)).returncode == 0
    batch, alone = np.load(out / f"{uid_of(good[1])}.npz"), np.load(single)
    for key in ("attribution", "model_input", "heatmap", "target", "score"):
        np.testing.assert_allclose(batch[key], alone[key], rtol=1e-6, atol=1e-9)
    assert batch["heatmap"].shape == (96, 96)

    assert {rows[str(path)]["status"] for path in good} == {"done"}
    assert {rows[str(path)]["status"] for path in broken} == {"failed"}
    assert rows[str(broken[1])]["error"] == "not a DICOM file"
    assert "cannot decode pixels" in rows[str(broken[0])]["error"]
    assert 0 < float(rows[str(good[0])]["score"]) < 1 and float(rows[str(good[0])]["aopc"]) == pytest.approx(
        json.loads((out / f"{uid_of(good[0])}.json").read_text())["aopc"])


def test_second_run_skips_what_is_done_and_retries_what_failed(study, two_runs):
    _model, _inputs, good, broken = study
    out, _first, times, second, _summary = two_runs
    assert second.returncode == 1
    assert "4 images: 0 explained, 2 already done, 2 failed" in second.stderr
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir() if path.name in times
            and path.name != "summary.csv"} == {name: t for name, t in times.items() if name != "summary.csv"}
    lines = [json.loads(line) for line in second.stdout.splitlines()]
    status = {line["path"]: line["status"] for line in lines}
    assert status == {**{str(p): "skipped" for p in good}, **{str(p): "failed" for p in broken}}
    skipped = next(line for line in lines if line["path"] == str(good[0]))
    assert skipped["sop_instance_uid"] == uid_of(good[0]) and 0 < skipped["score"] < 1


def test_an_image_without_its_record_is_done_again(study, tmp_path):
    model, inputs, good, _broken = study
    out = tmp_path / "maps"
    args = (str(good[0]), str(good[1]), "--model", str(model), *OCCLUSION, "--no-trust", "--out", str(out))
    assert explain(*args).returncode == 0, "every image explained: exit status 0"
    uid = uid_of(good[1])
    (out / f"{uid}.json").unlink()  # as if the run had stopped between the map and its record
    (out / f".{uid}.npz.abc123.partial").write_bytes(b"half")  # and left a temporary file
    again = explain(*args, "--json")
    assert again.returncode == 0
    assert {json.loads(line)["path"]: json.loads(line)["status"] for line in again.stdout.splitlines()} == {
        str(good[0]): "skipped", str(good[1]): "done"}
    assert (out / f"{uid}.json").is_file()
    assert not (out / f".{uid}.npz.abc123.partial").exists(), "the killed run's temporary file is removed"


def test_other_settings_are_refused_in_a_folder_of_results(study, two_runs):
    model, inputs, _good, _broken = study
    out = two_runs[0]
    result = explain(str(inputs), "--model", str(model), "--method", "occlusion", "--window", "12",
                     "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {out} holds results made with other settings (params); "
                                     "choose another --out folder")


def test_nothing_done_is_exit_status_2(study, tmp_path):
    model, _inputs, _good, broken = study
    result = explain(str(broken[1]), str(tmp_path / "missing.dcm"), "--model", str(model), "--out",
                     str(tmp_path / "maps"))
    assert result.returncode == 2
    assert f"failed: {tmp_path / 'missing.dcm'}: no such file or folder" in result.stderr


def test_several_paths_need_a_folder(study, tmp_path):
    model, _inputs, good, _broken = study
    result = explain(str(good[0]), str(good[1]), "--model", str(model), "--out", str(tmp_path / "one.npz"))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: several paths need a folder --out to hold one result per image"


def test_names_come_from_the_instance_uid_never_the_path(tmp_path):
    patient = tmp_path / "DOE^JOHN"
    single = factory.write_radiograph(patient / "chest.dcm", rows=32, cols=32)
    shutil.copy(single, patient / "copy.dcm")
    frames = factory.write_multiframe(patient / "cine.dcm", n_frames=3, rows=16, cols=16)
    jobs = plan([frame for series in open_paths([patient]).all_series() for frame in series.frames])

    def settled(jobs: list[Job]) -> list[str]:
        claimed: set[str] = set()
        return [settle(replace(job, digest=file_sha256(job.frame.path)), tmp_path, claimed)[0].name for job in jobs]

    names = settled(jobs)
    assert len(set(names)) == len(names) == 5
    assert not any("DOE" in name or "chest" in name for name in names)
    cine = uid_of(frames)
    assert sorted(name for name in names if name.startswith(cine)) == [f"{cine}-frame{i}" for i in (1, 2, 3)]
    copies = sorted(name for name in names if name.startswith(uid_of(single)))
    assert copies[0] == uid_of(single) and copies[1].startswith(uid_of(single) + "-")
    # Stable between runs: the same files get the same names.
    assert settled(plan([job.frame for job in jobs])) == names


def test_an_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "map.npz"

    def half_then_fail(path: Path) -> None:
        path.write_bytes(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_atomically(target, half_then_fail)
    assert list(tmp_path.iterdir()) == []
    replace_atomically(target, lambda path: path.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def test_dicom_exports_and_report_per_image_deidentified_unless_asked(study, tmp_path):
    model, _inputs, good, _broken = study
    out = tmp_path / "exports"
    result = explain(str(good[0]), "--model", str(model), *OCCLUSION, "--no-trust", "--format", "pm,sc,html",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    uid = uid_of(good[0])
    pm, sc = dcmread(out / f"{uid}.pm.dcm"), dcmread(out / f"{uid}.sc.dcm")
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and pm.Rows == 120 and pm.Columns == 200
    assert "Secondary Capture" in sc.SOPClassUID.name and sc.SamplesPerPixel == 3
    assert str(pm.PatientName) != "Synthetic^Test" and str(sc.PatientName) != "Synthetic^Test"
    report = (out / f"{uid}.html").read_text()
    assert "Occlusion" in report and "Synthetic" not in report

    identified = explain(str(good[0]), "--model", str(model), *OCCLUSION, "--no-trust", "--format", "pm",
                         "--identified", "--out", str(out))
    assert identified.returncode == 2 and "other settings (identified)" in identified.stderr
    single = tmp_path / "one.sc.dcm"
    assert explain(str(good[0]), "--model", str(model), *OCCLUSION, "--no-trust", "--identified",
                   "--out", str(single)).returncode == 0
    assert str(dcmread(single).PatientName) == "Synthetic^Test"


def test_a_broken_multiframe_file_is_one_line_of_the_report(capsys, tmp_path):
    from cli.batch import report

    reason = "cannot decode pixels: truncated frame"
    rows = [{"status": "failed", "path": "/data/cine.dcm", "error": reason} for _ in range(10_000)]
    rows += [{"status": "failed", "path": "/data/other.dcm", "error": "not DICOM"}, {"status": "done", "path": "x"}]
    report(rows, {"done": 1, "skipped": 0, "failed": 10_001}, tmp_path / "summary.csv")
    lines = capsys.readouterr().err.splitlines()
    assert lines[1:] == [f"failed: /data/cine.dcm (10000 frames): {reason}", "failed: /data/other.dcm: not DICOM"]


def test_ctrl_c_stops_a_run_in_one_line_and_the_next_run_resumes(study, tmp_path):
    import signal

    model, _inputs, _good, _broken = study
    inputs = tmp_path / "in"
    for k in range(12):
        factory.write_radiograph(inputs / f"{k}.dcm", rows=64, cols=64, seed=k)
    args = [str(inputs), "--model", str(model), *OCCLUSION, "--out", str(tmp_path / "maps"), "--json"]
    run = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "explain", *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT)
    first = run.stdout.readline()  # one image is done: the run is well under way
    run.send_signal(signal.SIGINT)
    _rest, errors = run.communicate(timeout=120)
    assert json.loads(first)["status"] == "done"
    assert run.returncode == 130, errors
    assert "Traceback" not in errors and errors.strip().splitlines()[-1].startswith("explain: interrupted")
    again = explain(*args)
    assert again.returncode == 0, again.stderr
    rows = [json.loads(line) for line in again.stdout.splitlines()]
    assert len(rows) == 12 and any(row["status"] == "skipped" for row in rows), "what was done is kept"


def test_ctrl_c_that_a_library_turns_into_another_error_still_stops_the_run(study, tmp_path, monkeypatch, capsys):
    """Ctrl-C landing inside a library came out as a TypeError (numpy) or a bad file descriptor,
    was counted as one image's failure, and the run went on as if nothing had been asked."""
    import os
    import signal
    import time

    import cli.batch
    import main

    model, inputs, _good, _broken = study
    explained = []

    def interrupted_inside_a_library(*args, **kwargs):
        explained.append(args[0])
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler runs here, long before this ends
        except KeyboardInterrupt:
            raise TypeError("Cannot compare structured arrays unless they have a common dtype") from None
        raise AssertionError("the interrupt never came")

    monkeypatch.setattr(cli.batch, "explain_job", interrupted_inside_a_library)
    previous = signal.getsignal(signal.SIGINT)  # main.py installs its own handler
    try:
        status = main.main(["explain", str(inputs), "--model", str(model), *OCCLUSION, "--out", str(tmp_path / "maps")])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert status == main.INTERRUPTED and len(explained) == 1, "the first interrupted image ends the run"
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("explain: interrupted")
