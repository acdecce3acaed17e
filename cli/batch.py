"""``main.py explain PATH ... --out DIR``: every image under the paths, one result per image.

The model is loaded once for the whole run. Each image's results are named after its SOP
Instance UID (never after the patient or the folder names, which often carry them), written
atomically, and its record ``NAME.json`` is written last: an image whose record and requested
files are all there is done, and a second run over the same folder skips it. ``batch.json``
holds the settings the folder's results were made with, so that a run with other settings
cannot mix its maps in unnoticed. A file that cannot be read or explained is reported with one
line and the rest go on; ``summary.csv`` lists every image of the run at the end.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from cli.explain_outputs import FORMATS, OutputError, replace_atomically, write_output
from cli.image_explanation import CommandError, explain_image
from dicom.bundled import DEMO_STUDY
from dicom.files import DicomReadError
from dicom.image import load_frame
from dicom.series import Frame, frame_count, open_paths
from explain.session import ExplanationSettings

SETTINGS_FILE = "batch.json"
SUMMARY_FILE = "summary.csv"
#: The summary's first columns; each method's own figures follow.
SUMMARY_COLUMNS = ["name", "status", "path", "frame", "sop_instance_uid", "error", "target", "score"]


@dataclass(frozen=True)
class Job:
    """One image to explain: a frame of a file, and the name its results go under."""

    frame: Frame
    name: str

    def record_path(self, folder: Path) -> Path:
        return folder / f"{self.name}.json"

    def output_path(self, folder: Path, fmt: str) -> Path:
        return folder / f"{self.name}{FORMATS[fmt][0]}"

    def source(self) -> dict:
        """Where the image came from, for its record and the summary."""
        return {"name": self.name, "path": str(self.frame.path), "frame": self.frame.index,
                "sop_instance_uid": str(self.frame.header.get("SOPInstanceUID", ""))}


def base_name(frame: Frame) -> str:
    """The SOP Instance UID (with the frame number in a multi-frame file), safe as a file name.

    A file without a usable UID is named after a digest of its path: stable between runs, and
    free of the names in the path.
    """
    uid = str(frame.header.get("SOPInstanceUID", "")).strip()
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", uid) or len(uid) > 64:
        uid = "file-" + hashlib.sha256(str(frame.path.resolve()).encode()).hexdigest()[:16]
    return f"{uid}-frame{frame.index + 1}" if frame_count(frame.header) > 1 else uid


def plan(frames: list[Frame]) -> list[Job]:
    """One job per frame, each with its own name even when two files share a UID."""
    jobs: list[Job] = []
    taken: set[str] = set()
    for frame in frames:
        name = base_name(frame)
        if name in taken:  # a copy or a broken export: two files claim one instance
            name += "-" + hashlib.sha256(str(frame.path.resolve()).encode()).hexdigest()[:8]
        taken.add(name)
        jobs.append(Job(frame, name))
    return jobs


def settings_of(settings: ExplanationSettings, args: argparse.Namespace) -> dict:
    """What a folder's results depend on: method, parameters, model file, target, precision, identity.

    Identity is among them so that a folder never mixes identified and de-identified exports.
    """
    digest = hashlib.sha256(Path(args.model).read_bytes()).hexdigest()
    return json.loads(json.dumps({"method": settings.method.name, "params": dataclasses.asdict(settings.params),
                                  "model": Path(args.model).name, "model_sha256": digest,
                                  "target": settings.label, "fast": settings.model.fast,
                                  "identified": args.identified}))


def claim_folder(folder: Path, settings: dict) -> None:
    """Make the output folder, or check that its earlier results were made the same way."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SETTINGS_FILE
    if path.exists():
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            earlier = None
        if earlier != settings:
            changed = sorted(key for key in settings if not isinstance(earlier, dict) or earlier.get(key) != settings[key])
            raise CommandError(f"{folder} holds results made with other settings ({', '.join(changed)}); "
                               "choose another --out folder")
        return
    replace_atomically(path, lambda temporary: temporary.write_text(json.dumps(settings, indent=1)))


def finished_record(job: Job, folder: Path, formats: list[str]) -> dict | None:
    """The record of an earlier run when every requested file of this image is there."""
    if not all(job.output_path(folder, fmt).exists() for fmt in formats):
        return None
    try:
        return json.loads(job.record_path(folder).read_text())
    except (OSError, ValueError):
        return None


def explain_job(job: Job, folder: Path, formats: list[str], settings: ExplanationSettings,
                args: argparse.Namespace) -> dict:
    """Explain one image and write its files, the record last."""
    explained, record = explain_image(settings, load_frame(job.frame))
    for fmt in formats:
        write_output(job.output_path(folder, fmt), fmt, explained, deidentify=not args.identified)
    record = {**job.source(), **record,
              "outputs": [job.output_path(folder, fmt).name for fmt in formats]}
    replace_atomically(job.record_path(folder), lambda temporary: temporary.write_text(json.dumps(record)))
    return record


def one_line(error: BaseException) -> str:
    """A reason in one line: our own errors say it plainly, others are named by their kind."""
    text = " ".join(str(error).split())
    if isinstance(error, (DicomReadError, ValueError, CommandError, OutputError)):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def write_summary(path: Path, rows: list[dict]) -> None:
    """Every image of the run, one row each, with its status and figures."""
    extra = list(dict.fromkeys(key for row in rows for key in row
                               if key not in SUMMARY_COLUMNS and key not in ("outputs", "final", "progress")))

    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=SUMMARY_COLUMNS + extra, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    replace_atomically(path, write)


def run_batch(args: argparse.Namespace, settings: ExplanationSettings) -> int:
    """Explain every image under ``args.paths`` into the folder ``args.out``; the exit status.

    0 when every image is done (now or by an earlier run), 1 when some failed, 2 when none
    could be done.
    """
    folder = Path(args.out)
    claim_folder(folder, settings_of(settings, args))
    collection = open_paths(args.paths or [str(DEMO_STUDY)])
    jobs = plan([frame for series in collection.all_series() for frame in series.frames])
    rows: list[dict] = []
    counts = {"done": 0, "skipped": 0, "failed": 0}

    def emit(row: dict) -> None:
        rows.append(row)
        counts[row["status"]] += 1
        if args.json:
            print(json.dumps(row), flush=True)

    for error in collection.errors:
        emit({"name": "", "status": "failed", "path": str(error.path), "error": error.error})
    with tqdm(jobs, desc=settings.method.title, unit="image", file=sys.stderr, dynamic_ncols=True) as bar:
        for job in bar:
            earlier = finished_record(job, folder, args.format)
            if earlier is not None:
                emit({**earlier, "status": "skipped"})
                continue
            try:
                emit({**explain_job(job, folder, args.format, settings, args), "status": "done"})
            except Exception as error:  # one bad image must not end the batch; it is reported below
                emit({**job.source(), "status": "failed", "error": one_line(error)})
            bar.set_postfix(failed=counts["failed"], refresh=False)
    write_summary(folder / SUMMARY_FILE, rows)
    report(rows, counts, folder)
    if counts["failed"] == 0 and rows:
        return 0
    return 1 if counts["done"] + counts["skipped"] else 2


def report(rows: list[dict], counts: dict[str, int], folder: Path) -> None:
    """The closing summary on stderr: the counts, then each failure with its reason."""
    total = sum(counts.values())
    if not total:
        print("error: no DICOM image found", file=sys.stderr)
        return
    print(f"{total} image{'s' if total != 1 else ''}: {counts['done']} explained, "
          f"{counts['skipped']} already done, {counts['failed']} failed; summary in {folder / SUMMARY_FILE}",
          file=sys.stderr)
    for row in rows:
        if row["status"] == "failed":
            print(f"failed: {row['path']}: {row['error']}", file=sys.stderr)
