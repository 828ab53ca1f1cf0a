"""The output folder of one run, written as a whole or not at all.

    folder = OutputFolder("out", overwrite=False)
    with folder as staging:      # locked; `staging` is an empty hidden folder beside "out"
        write_everything(staging)
        folder.commit({"inputs": ...})   # staging/run.json, then staging becomes "out"

Beside OUT live, while a run writes: `.OUT.lock` (an flock that dies with its process, so two runs
never mix), `.OUT.partial-PID` (the staging folder) and, for a moment during the swap, `.OUT.old-PID`
(the replaced folder: `overwrite` replaces, never merges). A run killed at any moment leaves only
these; the next run into OUT restores a folder moved aside by an unfinished swap and deletes the rest.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from pathlib import Path
from types import TracebackType

from ..interrupt import interrupts_deferred
from .atomic import write_text_atomic

RUN_INFO = "run.json"


class OutputFolderError(ValueError):
    """An output folder that cannot be written: names the folder and what to do."""


class OutputFolder:
    """A lock, a staging folder and an all-or-nothing swap for the output folder `final`."""

    def __init__(self, final: str | os.PathLike, overwrite: bool) -> None:
        self.final = Path(final)  # as the user spelled it, for messages
        self.overwrite = overwrite
        self._path = self.final.resolve()  # the folder itself, even behind a symlink
        self._lock: int | None = None
        self._staging: Path | None = None

    def open(self) -> Path:
        """Take the lock, clean up after killed runs, check `final`, and return an empty staging folder."""
        if not self._path.name:
            raise OutputFolderError(f"{self.final} cannot be an output folder; choose another -o")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _take_lock(self._sibling("lock"), self.final)
        except OSError as err:
            raise OutputFolderError(f"cannot write {self.final}: {err.strerror or err}") from err
        try:
            self._recover()
            self._refuse_existing()
            self._staging = self._sibling(f"partial-{os.getpid()}")
            self._staging.mkdir()
        except BaseException:
            self._release()
            raise
        return self._staging

    def commit(self, run_info: dict) -> None:
        """Write `run_info` as run.json in the staging folder, then swap it onto `final`."""
        if self._staging is None:
            raise RuntimeError("OutputFolder.commit() needs open() first")
        write_text_atomic(self._staging / RUN_INFO, json.dumps(run_info, indent=2, default=str) + "\n")
        with interrupts_deferred():  # Ctrl-C lands after the swap, not between its renames
            self._refuse_existing()  # a folder someone else filled during the run is not ours to replace
            old = self._sibling(f"old-{os.getpid()}")
            if os.path.lexists(self._path):
                os.rename(self._path, old)
            os.rename(self._staging, self._path)
            self._staging = None
            self._remove_leftovers()
            self._release()

    def abort(self) -> None:
        """Remove the staging folder (restoring `final` if a swap stopped half-way) and release the
        lock. Does nothing after `commit()` or a second time."""
        if self._lock is None:
            return
        with interrupts_deferred():
            try:
                self._recover()
            finally:
                self._staging = None
                self._release()

    def __enter__(self) -> Path:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.abort()

    def _sibling(self, kind: str) -> Path:
        return self._path.parent / f".{self._path.name}.{kind}"

    def _leftovers(self, kinds: str = "partial|old") -> list[Path]:
        """Staging ("partial") and moved-aside ("old") folders of runs into `final`, this one's included."""
        pattern = re.compile(rf"\.{re.escape(self._path.name)}\.({kinds})-\d+")
        return sorted(p for p in self._path.parent.iterdir() if pattern.fullmatch(p.name))

    def _recover(self) -> None:
        """Under the lock no other run is live: put back a folder that an unfinished swap moved
        aside (there is at most one, since every run does this first), then delete the rest."""
        if not os.path.lexists(self._path):
            moved_aside = self._leftovers("old")
            if moved_aside:
                os.rename(moved_aside[0], self._path)
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        for path in self._leftovers():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def _refuse_existing(self) -> None:
        if not os.path.lexists(self._path):
            return
        if not self._path.is_dir():
            raise OutputFolderError(f"{self.final} is a file, not a folder; choose another -o")
        if not self.overwrite and any(self._path.iterdir()):
            raise OutputFolderError(f"{self.final} exists and is not empty; pass --overwrite to replace it")

    def _release(self) -> None:
        """Remove the lock file while holding it (a run that opened it meanwhile sees it is gone), then unlock."""
        if self._lock is None:
            return
        if _is_lock_file(self._lock, self._sibling("lock")):
            os.unlink(self._sibling("lock"))
        os.close(self._lock)
        self._lock = None


def _take_lock(path: Path, final: Path) -> int:
    """An exclusive flock on `path`, holding this process's id; refused at once if another run has it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise OutputFolderError(
                f"another fast3r run is writing to {final}{pid}; wait for it or choose another -o"
            ) from None
        if _is_lock_file(fd, path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # the run that held it finished and removed it: lock the new one


def _is_lock_file(fd: int, path: Path) -> bool:
    """Whether `fd` is still the file at `path` (not one removed since it was opened)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
