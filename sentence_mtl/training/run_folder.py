"""The output folder of a run: one writer at a time, and an earlier run replaced, never deleted first.

A run claims its folder with an exclusive ``flock`` on ``OUTPUT_DIR/.lock`` for its whole life; the
kernel releases it when the process ends, even by a crash, so a lock is never stale. With
``--overwrite`` the earlier run's files (``best/``, ``last/``, ``metrics.json``, ``log.jsonl``)
stay untouched while the new run checks its flags, loads its model and trains up to its first
checkpoint; only then are they moved aside (renames) and removed, and the new run's log, kept in
memory until that moment, is written. An error or an interrupt before that leaves the earlier
run as it was. Files of the user's own in the folder are never touched.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from sentence_mtl.errors import CheckpointError, InvalidInputError, OutputFolderError
from sentence_mtl.io import recover_directory

LOCK_FILE = ".lock"
LOG_FILE = "log.jsonl"
RUN_OUTPUTS = ("best", "last", "metrics.json", LOG_FILE)
_REPLACED_PREFIX = ".replaced-"


class RunFolder:
    """Where one run writes: ``best/``, ``last/``, ``metrics.json`` and ``log.jsonl``.

    ``writer`` is false on the ranks of a data-parallel run other than 0: they neither lock nor
    write. A folder that is never :meth:`claim`-ed (a :class:`Trainer` built by hand) is written
    directly, without a lock.
    """

    def __init__(self, path: str | Path, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer
        self.replacing = False  # an earlier run is here and goes at the first checkpoint
        self._pending_log: list[str] = []
        self._lock: int | None = None

    # ------------------------------------------------------------------ claiming
    def claim(self, overwrite: bool = False, resume: bool = False) -> RunFolder:
        """Check the folder can hold this run, and lock it; nothing in it is changed or removed."""
        if not self.writer:
            return self
        self._make()
        self._take_lock()
        try:
            if resume:
                self._check_resumable()
            elif not self.is_empty():
                if not overwrite:
                    raise InvalidInputError(
                        f"output folder {self.path} is not empty; "
                        "pass --overwrite to replace it or --resume to continue it"
                    )
                self.replacing = bool(self.earlier_run())
        except BaseException:
            self.release()
            raise
        return self

    def earlier_run(self) -> list[Path]:
        """What a new run replaces: a run's outputs and the leftovers of its interrupted writes."""
        if not self.path.is_dir():
            return []
        leftovers = (".best.", ".last.", ".metrics.json.", _REPLACED_PREFIX)
        return sorted(
            path
            for path in self.path.iterdir()
            if path.name in RUN_OUTPUTS or path.name.startswith(leftovers)
        )

    def is_empty(self) -> bool:
        return not any(path.name != LOCK_FILE for path in self.path.iterdir())

    def _make(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise OutputFolderError(f"--output-dir {self.path} is a file, not a folder; choose a folder path")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputFolderError(
                f"--output-dir {self.path} cannot be created ({error.strerror or error}); "
                "choose a folder you can write to"
            ) from None

    def _take_lock(self) -> None:
        try:
            descriptor = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OutputFolderError(
                f"--output-dir {self.path} is not writable ({error.strerror or error}); "
                "choose a folder you can write to"
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "another process"
            os.close(descriptor)
            raise OutputFolderError(
                f"{self.path} is in use by PID {holder}; wait for that run to end or choose another "
                "--output-dir"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock = descriptor

    def _check_resumable(self) -> None:
        for name in ("best", "last"):
            recover_directory(self.path / name)
        if not (self.path / "last").is_dir():
            raise CheckpointError(
                f"--resume {self.path}: there is no {self.path / 'last'} checkpoint to resume"
            )

    def release(self) -> None:
        """Give up the lock (the lock file stays: removing it would race with a starting run)."""
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    # ------------------------------------------------------------------ writing
    def before_checkpoint(self) -> None:
        """Called before every checkpoint write; the first one replaces the earlier run."""
        if not (self.writer and self.replacing):
            return
        self.path.mkdir(parents=True, exist_ok=True)
        retired = self.path / f"{_REPLACED_PREFIX}{os.getpid()}"
        retired.mkdir(exist_ok=True)
        for path in self.earlier_run():
            if path != retired:
                os.replace(path, retired / path.name)
        shutil.rmtree(retired, ignore_errors=True)
        self.replacing = False
        if self._pending_log:
            self._append_log(self._pending_log)
            self._pending_log = []

    def log(self, record: dict[str, Any]) -> None:
        """Append a record to ``log.jsonl`` (kept in memory while an earlier run is still in place)."""
        if not self.writer:
            return
        line = json.dumps(record) + "\n"
        if self.replacing:
            self._pending_log.append(line)
            return
        self._append_log([line])

    def _append_log(self, lines: list[str]) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with open(self.path / LOG_FILE, "a", encoding="utf-8") as handle:
                handle.writelines(lines)
        except OSError as error:
            raise OutputFolderError(
                f"could not write {self.path / LOG_FILE} ({error.strerror or error}); the checkpoints "
                "written so far are intact. Free disk space or fix the folder, then --resume"
            ) from None
