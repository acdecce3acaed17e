"""``main.py explain PATH ... --out DIR``: every image under the paths, one result per image.

The model is loaded once for the whole run. Each image's results are named after its SOP
Instance UID (never after the patient or the folder names, which often carry them), written
atomically, and its record ``NAME.json`` is written last. The record holds the digest of the
source file's bytes: an image whose record matches its own content and whose requested files
are all there is done, and a second run over the same folder skips it; another image reusing
the UID gets a name of its own and never another image's results. ``batch.json`` holds the
settings the folder's results were made with, so that a run with other settings cannot mix its
maps in unnoticed. A file that cannot be read or explained is reported with one line and the
rest go on; ``summary.csv`` lists every image of the run at the end. An image outside what the
model's card expects is such a failure unless ``--force``, which is not among the settings in
``batch.json``: it decides which images are explained, not how, so a run with it explains the
images an earlier run refused, and a later run without it keeps what was explained; each record's
``image_check`` says what differed.

The folder is held by one run at a time; the run first removes the temporary files a killed
run left, and checks that it can write there. A folder that refuses a file (read-only, full,
something in the way) stops the run with one line and exit status 2: what was done is kept.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import hashlib
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from cli import interrupt
from cli.explain_outputs import (
    FORMATS,
    OutputError,
    WriteError,
    check_writable,
    remove_temporaries,
    replace_atomically,
    write_output,
)
from cli.image_explanation import CommandError, explain_image, image_check
from dicom.bundled import DEMO_STUDY
from dicom.files import DicomReadError, ReadError
from dicom.image import load_frame
from dicom.series import Frame, frame_count, open_paths
from explain.session import ExplanationSettings

try:
    import fcntl
except ImportError:  # Windows: runs into one folder are not kept apart
    fcntl = None

SETTINGS_FILE = "batch.json"
SUMMARY_FILE = "summary.csv"
#: The most a record or ``batch.json`` may hold; anything bigger was not written by a run.
RECORD_LIMIT = 1 << 20
#: The names :func:`base_name` and :func:`settle` give, without the file's ending.
RESULT_NAME = re.compile(r"(?:[0-9]+(?:\.[0-9]+)*|file-[0-9a-f]{16})(?:-frame[0-9]+)?(?:-[0-9a-f]{16}(?:-[0-9a-f]{8})?)?")
#: The endings of an image's files: its record, then each format's.
RESULT_ENDINGS = (".json", *(ending for ending, _writer in FORMATS.values()))
#: The summary's first columns; each method's own figures follow.
SUMMARY_COLUMNS = ["name", "status", "path", "frame", "sop_instance_uid", "error", "target", "score"]


@dataclass(frozen=True)
class Job:
    """One image to explain: a frame of a file, and the name its results go under (see :func:`settle`)."""

    frame: Frame
    name: str
    #: sha256 of the source file's bytes, once read: what makes a record this image's own.
    digest: str = ""

    def record_path(self, folder: Path) -> Path:
        return folder / f"{self.name}.json"

    def output_path(self, folder: Path, fmt: str) -> Path:
        return folder / f"{self.name}{FORMATS[fmt][0]}"

    def source(self) -> dict:
        """Where the image came from, for its record and the summary."""
        return {"name": self.name, "path": str(self.frame.path), "frame": self.frame.index,
                "sop_instance_uid": str(self.frame.header.get("SOPInstanceUID", "")), "source_sha256": self.digest}

    def made(self, record: object) -> bool:
        """Whether a record was made from this very frame: same file content, same frame."""
        return (isinstance(record, dict) and bool(self.digest) and record.get("source_sha256") == self.digest
                and record.get("frame") == self.frame.index)


def base_name(frame: Frame) -> str:
    """The SOP Instance UID (with the frame number in a multi-frame file), safe as a file name.

    A file without a usable UID is named after a digest of its path: stable between runs, and
    free of the names in the path.
    """
    uid = str(frame.header.get("SOPInstanceUID", "")).strip()
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", uid) or len(uid) > 64:
        uid = "file-" + path_digest(frame.path)[:16]
    return f"{uid}-frame{frame.index + 1}" if frame_count(frame.header) > 1 else uid


def plan(frames: list[Frame]) -> list[Job]:
    """One job per frame, named by its UID for now; :func:`settle` makes the name its own."""
    return [Job(frame, base_name(frame)) for frame in frames]


def path_digest(path: Path) -> str:
    """A digest of where a file is: a stable name that says nothing of the path's own names."""
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()


def settings_of(settings: ExplanationSettings, args: argparse.Namespace) -> dict:
    """What a folder's results depend on: method, parameters, model file, target, score, precision, identity.

    Identity is among them so that a folder never mixes identified and de-identified exports.
    """
    try:
        digest = file_sha256(Path(args.model))
    except OSError as error:
        raise CommandError(f"cannot read {args.model}: {error.strerror or error}") from None
    return json.loads(json.dumps({"method": settings.method.name, "params": dataclasses.asdict(settings.params),
                                  "model": Path(args.model).name, "model_sha256": digest,
                                  "target": settings.label, "score": settings.explained_score,
                                  "fast": settings.model.fast, "identified": args.identified}))


def is_result_file(name: str) -> bool:
    """Whether a run into a folder could have written a file of this name."""
    if name in (SETTINGS_FILE, SUMMARY_FILE):
        return True
    return any(name.endswith(ending) and RESULT_NAME.fullmatch(name[:-len(ending)]) for ending in RESULT_ENDINGS)


def open_regular(path: Path) -> BinaryIO:
    """``path`` open for reading; OSError unless it is a regular file (a FIFO, device or folder).

    Opened without blocking and checked before anything is read, so that a FIFO or a link to
    an endless device can neither hang the run nor fill its memory.
    """
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise OSError(f"{path} is not a regular file")
        return os.fdopen(handle, "rb")
    except BaseException:
        os.close(handle)
        raise


def read_small_json(path: Path) -> object | None:
    """The JSON in a small regular file; None when absent, not a regular file, too big or not JSON."""
    try:
        with open_regular(path) as file:
            data = file.read(RECORD_LIMIT + 1)
    except OSError:
        return None
    if len(data) > RECORD_LIMIT:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes; OSError when it is gone or not a regular file."""
    with open_regular(path) as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def make_folder(folder: Path) -> None:
    """Make the output folder; WriteError when a file is in the way or the parent refuses."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(f"cannot use {folder} as the output folder: it is a file, not a folder") from None
    except OSError as error:
        raise WriteError(f"cannot make the output folder {folder}: {error.strerror or error}") from None


@contextmanager
def hold_folder(folder: Path) -> Iterator[None]:
    """Hold the output folder for this run alone; CommandError when another run holds it.

    A run removes the temporary files a killed run left: a run still writing must keep its own.
    Where the system cannot lock a folder (Windows, some network file systems) runs are not kept
    apart.
    """
    if fcntl is None:
        yield
        return
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError as error:
        raise WriteError(f"cannot open the output folder {folder}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CommandError(f"another run is writing to {folder}; wait for it to end") from None
        except OSError:
            pass  # this file system has no locks
        yield
    finally:
        os.close(handle)  # and the lock with it


def claim_folder(folder: Path, settings: dict) -> None:
    """Check that the folder's earlier results were made the same way, or record how these are made."""
    path = folder / SETTINGS_FILE
    if os.path.lexists(path):
        earlier = read_small_json(path)
        if not isinstance(earlier, dict):
            raise CommandError(f"{path} was not written by a batch run; choose another --out folder")
        if earlier != settings:
            changed = sorted(key for key in settings if earlier.get(key) != settings[key])
            raise CommandError(f"{folder} holds results made with other settings ({', '.join(changed)}); "
                               "choose another --out folder")
        return
    replace_atomically(path, lambda temporary: temporary.write_text(json.dumps(settings, indent=1)))


@contextmanager
def output_folder(folder: Path, settings: dict) -> Iterator[None]:
    """The output folder made, held, claimed for these settings, cleared of stale temporaries, writable."""
    make_folder(folder)
    with hold_folder(folder):
        claim_folder(folder, settings)
        remove_temporaries(folder, is_result_file)
        check_writable(folder / SUMMARY_FILE)
        yield


def settle(job: Job, folder: Path, claimed: set[str]) -> tuple[Job, dict | None]:
    """Claim the name this image's results go under; the job so named, and its earlier record if any.

    The UID, then the UID with the start of the content digest (another image reusing the UID,
    or the file changed since), then that with a digest of the path (copies of one file): a
    name holding this image's own record comes first, else the first that holds no record and
    that no other image of this run took. A record made from other content is never taken
    over, and its image's results stay as they are.
    """
    content = f"{job.name}-{job.digest[:16]}"
    free = None
    for name in (job.name, content, f"{content}-{path_digest(job.frame.path)[:8]}"):
        if name in claimed:
            continue
        record_path = folder / f"{name}.json"
        record = read_small_json(record_path)
        if job.made(record):
            claimed.add(name)
            return dataclasses.replace(job, name=name), record
        if free is None and not os.path.lexists(record_path):
            free = name
    if free is None:
        raise OutputError(f"its names are taken by other images' results in {folder}")
    claimed.add(free)
    return dataclasses.replace(job, name=free), None


def is_done(job: Job, folder: Path, formats: list[str], record: dict | None) -> bool:
    """Whether an earlier run made this image's record and every file now asked for."""
    return record is not None and all(job.output_path(folder, fmt).is_file() for fmt in formats)


def explain_job(job: Job, folder: Path, formats: list[str], settings: ExplanationSettings,
                args: argparse.Namespace) -> dict:
    """Explain one image and write its files, the record last.

    An image outside what the model's card expects fails with the reason unless ``--force``;
    the record's ``image_check`` says what differed or went unchecked (empty when nothing).
    """
    image = load_frame(job.frame)
    check = image_check(settings, image, args.force)
    explained, record = explain_image(settings, image)
    for fmt in formats:
        write_output(job.output_path(folder, fmt), fmt, explained, deidentify=not args.identified)
    record = {**job.source(), **record, "image_check": check,
              "outputs": [job.output_path(folder, fmt).name for fmt in formats]}
    replace_atomically(job.record_path(folder), lambda temporary: temporary.write_text(json.dumps(record)))
    return record


def run_job(job: Job, folder: Path, args: argparse.Namespace, settings: ExplanationSettings,
            digest_of: Callable[[Path], str], claimed: set[str]) -> dict:
    """Skip the image when its results are there, else explain it; its summary row.

    Anything wrong with the image is its own failure; the folder refusing a file (WriteError)
    ends the run.
    """
    return image_row(job, lambda: settle(dataclasses.replace(job, digest=digest_of(job.frame.path)), folder, claimed),
                     folder, args, settings)


def image_row(job: Job, claim: Callable[[], tuple[Job, dict | None]], folder: Path, args: argparse.Namespace,
              settings: ExplanationSettings) -> dict:
    """Claim the image's name through ``claim``, then skip or explain it; its summary row.

    Apart from :func:`run_job` so that a worker elsewhere (:mod:`cli.ray_batch`) does the same
    work for a name the driver settled. WriteError passes through: the folder is at fault.
    """
    try:
        job, earlier = claim()
        if is_done(job, folder, args.format, earlier):
            return {**earlier, **job.source(), "status": "skipped"}
        return {**explain_job(job, folder, args.format, settings, args), "status": "done"}
    except WriteError:
        raise
    except Exception as error:  # one bad image must not end the batch; it is reported at the end
        if interrupt.requested():
            raise KeyboardInterrupt from error  # Ctrl-C, come out of a library as another error
        return {**job.source(), "status": "failed", "error": one_line(error)}


def one_line(error: BaseException) -> str:
    """A reason in one line: our own errors say it plainly, others are named by their kind."""
    text = " ".join(str(error).split())
    if isinstance(error, (DicomReadError, ValueError, CommandError, OutputError)):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def write_summary(path: Path, rows: list[dict]) -> None:
    """Every image of the run, one row each, with its status and figures."""
    extra = list(dict.fromkeys(key for row in rows for key in row
                               if key not in SUMMARY_COLUMNS and key not in ("outputs", "final", "progress", "params")))

    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=SUMMARY_COLUMNS + extra, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    replace_atomically(path, write)


def run_batch(args: argparse.Namespace, settings: ExplanationSettings,
              into: Callable[[Path, argparse.Namespace, ExplanationSettings], int] | None = None) -> int:
    """Explain every image under ``args.paths`` into the folder ``args.out``; the exit status.

    0 when every image is done (now or by an earlier run), 1 when some failed, 2 when none
    could be done or the folder refused a file (CommandError, one line). ``into`` does the work
    in the folder once it is ready: :func:`explain_into` here, or a cluster's (:mod:`cli.ray_batch`).
    """
    folder = Path(args.out)
    try:
        with output_folder(folder, settings_of(settings, args)):
            return (into or explain_into)(folder, args, settings)
    except WriteError as error:
        raise CommandError(str(error)) from None


def plan_run(args: argparse.Namespace) -> tuple[list[ReadError], list[Job]]:
    """The files under ``args.paths`` that cannot be read, and one job per image of the others."""
    collection = open_paths(args.paths or [str(DEMO_STUDY)])
    return collection.errors, plan([frame for series in collection.all_series() for frame in series.frames])


def explain_into(folder: Path, args: argparse.Namespace, settings: ExplanationSettings) -> int:
    """Explain every image under ``args.paths`` into a folder that is ready; the exit status."""
    errors, jobs = plan_run(args)
    tally = Tally(args.json)
    digest_of = functools.cache(file_sha256)  # a multi-frame file is read once, not once a frame
    claimed: set[str] = set()
    tally.add_errors(errors)
    with progress_bar(settings, len(jobs)) as bar:
        for job in jobs:
            tally.add(run_job(job, folder, args, settings, digest_of, claimed))
            tally.show(bar)
    return finish(folder, tally)


@dataclass
class Tally:
    """The run's rows in the order they came, counted by status; each printed as it comes with ``--json``."""

    json_lines: bool
    rows: list[dict] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: {"done": 0, "skipped": 0, "failed": 0})

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.counts[row["status"]] += 1
        if self.json_lines:
            print(json.dumps(row), flush=True)

    def add_errors(self, errors: Iterable[ReadError]) -> None:
        """The files that could not be read while planning: failed before any work."""
        for error in errors:
            self.add({"name": "", "status": "failed", "path": str(error.path), "error": error.error})

    def show(self, bar: tqdm) -> None:
        """One more image on the progress bar, with the failures so far."""
        bar.set_postfix(failed=self.counts["failed"], refresh=False)
        bar.update()


def progress_bar(settings: ExplanationSettings, total: int) -> tqdm:
    """The run's one progress bar, on stderr."""
    return tqdm(total=total, desc=settings.method.title, unit="image", file=sys.stderr, dynamic_ncols=True)


def finish(folder: Path, tally: Tally) -> int:
    """Write ``summary.csv``, report on stderr; the exit status (see :func:`run_batch`)."""
    rows, counts = tally.rows, tally.counts
    try:
        write_summary(folder / SUMMARY_FILE, rows)
    except WriteError:
        report(rows, counts, None)
        raise
    report(rows, counts, folder / SUMMARY_FILE)
    if counts["failed"] == 0 and rows:
        return 0
    return 1 if counts["done"] + counts["skipped"] else 2


def report(rows: list[dict], counts: dict[str, int], summary: Path | None) -> None:
    """The closing summary on stderr: the counts, where the summary is, then each failure with its reason."""
    total = sum(counts.values())
    if not total:
        print("error: no DICOM image found", file=sys.stderr)
        return
    print(f"{total} image{'s' if total != 1 else ''}: {counts['done']} explained, "
          f"{counts['skipped']} already done, {counts['failed']} failed"
          + (f"; summary in {summary}" if summary else ""), file=sys.stderr)
    for (path, error), frames in failures_by_file(rows).items():
        where = f"{path} ({frames} frames)" if frames > 1 else path
        print(f"failed: {where}: {error}", file=sys.stderr)


def failures_by_file(rows: list[dict]) -> dict[tuple[str, str], int]:
    """Each file's failures with one reason, counted: a broken multi-frame file is one line, not one per frame."""
    counted: dict[tuple[str, str], int] = {}
    for row in rows:
        if row["status"] == "failed":
            key = (str(row["path"]), str(row["error"]))
            counted[key] = counted.get(key, 0) + 1
    return counted
