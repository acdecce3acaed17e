"""The retrieve cache: one folder per study and series, one file per instance, under a size limit.

Each instance is written under a hidden temporary name in its series folder and renamed when
complete, so a retrieve stopped halfway (cancelled, time-out, killed) leaves only whole files,
and the next retrieve of the series fills in the rest. The oldest studies go when the cache
outgrows its limit, never the ones just retrieved.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from pacs.errors import PacsError

UID = re.compile(r"[0-9]+(\.[0-9]+)*")
#: A temporary file older than this was left by a process that died; younger ones may be in use.
STALE_SECONDS = 3600


def checked_uid(uid: str) -> str:
    """A UID safe to use as a file name; PacsError for anything else (a PACS could send ``../``)."""
    uid = uid.strip().rstrip("\0")
    if len(uid) > 64 or not UID.fullmatch(uid):
        raise PacsError("the PACS sent an instance with an invalid UID")
    return uid


class Cache:
    """Retrieved instances under ``root``: ``STUDY/SERIES/SOP.dcm``."""

    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = Path(root)
        self.limit_bytes = limit_bytes

    def study_folder(self, study_uid: str) -> Path:
        return self.root / checked_uid(study_uid)

    def instance_path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return self.study_folder(study_uid) / checked_uid(series_uid) / f"{checked_uid(sop_uid)}.dcm"

    def store(self, study_uid: str, series_uid: str, sop_uid: str, data: bytes) -> Path:
        """Write one instance atomically; its path. An instance already there is kept as it is."""
        path = self.instance_path(study_uid, series_uid, sop_uid)
        if path.is_file():
            return path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(data)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise PacsError(f"cannot write to the PACS cache {self.root}: {error.strerror or error}") from None
        return path

    def instances(self, study_uid: str) -> list[Path]:
        """The complete instances of a study in the cache."""
        folder = self.study_folder(study_uid)
        return sorted(folder.glob("*/*.dcm")) if folder.is_dir() else []

    def prune(self, keep: set[str] = frozenset()) -> list[Path]:
        """Remove stale temporary files, then the least recently used studies over the limit; those removed."""
        if not self.root.is_dir():
            return []
        now = time.time()
        for partial in self.root.glob("*/*/.*.partial"):
            if now - partial.stat().st_mtime > STALE_SECONDS:
                partial.unlink(missing_ok=True)
        studies = [(folder.stat().st_mtime, folder, size_of(folder)) for folder in self.root.iterdir()
                   if folder.is_dir() and folder.name not in keep]
        total = sum(size for _time, _folder, size in studies) + sum(
            size_of(self.root / uid) for uid in keep if (self.root / uid).is_dir())
        removed = []
        for _time, folder, size in sorted(studies):
            if total <= self.limit_bytes:
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            removed.append(folder)
        return removed


def size_of(folder: Path) -> int:
    """The bytes of the files under ``folder``."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
