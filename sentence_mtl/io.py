"""Files on disk: atomic writes of files and folders (a crash or a full disk never leaves a half-written
output behind), and the cache folder for what the package derives once and reuses.

A temporary is locked (``flock``) by the process that writes it, for as long as it writes. The kernel
drops the lock when that process ends, however it ends, so a temporary nobody holds was abandoned by
a killed process, and the next write beside it deletes it (:func:`remove_abandoned`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sentence_mtl.errors import CacheError, InvalidInputError, SentenceMTLError

CACHE_VARIABLE = "SENTENCE_MTL_CACHE"
# A temporary is created, then locked; one younger than this may be in that instant, so it is kept.
_ABANDONED_AFTER_S = 60.0


def cache_root() -> Path:
    """``$SENTENCE_MTL_CACHE``, default ``~/.cache/sentence_mtl``: fetched models and exported runtimes."""
    return Path(os.environ.get(CACHE_VARIABLE, Path.home() / ".cache" / "sentence_mtl"))


@contextmanager
def cache_writes(folder: Path) -> Iterator[None]:
    """A failure to write into the cache (a file in its place, no permission, a full disk) becomes one
    :class:`CacheError` that names the variable which moves the cache; package errors pass unchanged."""
    try:
        yield
    except SentenceMTLError:
        raise
    except OSError as error:
        blocking = file_in_the_way(folder)
        problem = f"{blocking} is a file, not a folder" if blocking else error.strerror or str(error)
        raise CacheError(
            f"cannot write the cache folder {folder} ({problem}); make it writable, or point "
            f"{CACHE_VARIABLE} at a folder you can write"
        ) from error


def file_in_the_way(folder: Path) -> Path | None:
    """The file, if any, that stands where ``folder`` or one of its parents should be a folder."""
    return next((path for path in (folder, *folder.parents) if path.is_file()), None)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_abandoned(candidates: Iterable[Path]) -> None:
    """Delete the temporaries among ``candidates`` that no process holds and that are over a minute old.

    Best effort: one that cannot be opened, locked or removed (a read-only cache) is left alone.
    """
    now = time.time()
    for path in candidates:
        try:
            if now - path.lstat().st_mtime < _ABANDONED_AFTER_S:
                continue
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass  # held by a writer still at work, or not ours to remove
        finally:
            os.close(descriptor)


def _locked(descriptor: int) -> int:
    """Hold ``descriptor``'s lock until it is closed: :func:`remove_abandoned` then leaves its file alone."""
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return descriptor


def write_json(path: Path, value: Any) -> None:
    """Human-readable JSON config (two-space indent, UTF-8 kept as is), as sentence-transformers writes it."""
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary sibling and one rename, so readers never see half of it."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        handle.write(text)


class AtomicFile:
    """A temporary sibling ``.NAME.xxxxxxxx.tmp`` to write; :meth:`commit` renames it over ``path``.

    A file written over minutes (predictions, embeddings) is only visible once complete: until
    :meth:`commit`, an existing ``path`` keeps its old content, and :meth:`discard` deletes the
    temporary. The new file gets the permissions a plain ``open`` would give it (those of the file
    it replaces, else 0o666 less the umask), not ``mkstemp``'s owner-only ones. Abandoned
    temporaries of ``path`` are deleted first.
    """

    def __init__(
        self, path: str | Path, mode: str = "w", encoding: str | None = None, newline: str | None = None
    ) -> None:
        self.path = Path(path)
        remove_abandoned(self.path.parent.glob(f".{glob.escape(self.path.name)}.{'?' * 8}.tmp"))
        descriptor, self.temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            self.handle: IO[Any] = os.fdopen(_locked(descriptor), mode, encoding=encoding, newline=newline)
        except BaseException:
            os.close(descriptor)
            os.unlink(self.temporary)
            raise
        self._committed = False

    def commit(self) -> None:
        """Flush the file to disk and rename it over ``path`` in one step."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        try:
            mode = os.stat(self.path).st_mode & 0o7777
        except OSError:
            mode = _NEW_FILE_MODE
        os.fchmod(self.handle.fileno(), mode)
        os.replace(self.temporary, self.path)
        self._committed = True
        self.handle.close()

    def discard(self) -> None:
        """Close and delete the temporary unless it was committed; a no-op after :meth:`commit`."""
        with contextlib.suppress(OSError):  # what a failed write left buffered cannot be flushed either
            self.handle.close()
        if not self._committed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temporary)


@contextmanager
def atomic_file(
    path: str | Path, mode: str = "w", encoding: str | None = None, newline: str | None = None
) -> Iterator[IO[Any]]:
    """Yield a handle on an :class:`AtomicFile` that replaces ``path`` once the body succeeds.

    If the body raises, the temporary is deleted and an existing ``path`` keeps its old content.
    """
    file = AtomicFile(path, mode, encoding, newline)
    try:
        yield file.handle
        file.commit()
    finally:
        file.discard()


def _new_file_mode() -> int:
    """0o666 less the umask, as ``open`` creates files; the umask can only be read by setting it."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _new_file_mode()


@contextmanager
def atomic_directory(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` in one rename.

    If the body raises, the temporary folder is removed and ``target`` is untouched. An existing
    non-empty ``target`` is only replaced when ``overwrite`` is true, and the old copy is deleted
    only after the new one is in place. A previous copy that a crash left retired is restored first,
    and temporary folders of ``target`` that killed processes abandoned are deleted.
    """
    target = Path(target)
    recover_directory(target)
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"{target} exists and is a file; choose a folder path")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise InvalidInputError(
            f"{target} already exists and is not empty; choose another path or overwrite it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(target.parent.glob(f"{glob.escape(_STAGING_PREFIX.format(name=target.name))}{'?' * 8}"))
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX.format(name=target.name), dir=target.parent))
    lock = _locked(os.open(staging, os.O_RDONLY))
    try:
        yield staging
        for root, _, files in os.walk(staging):
            for name in files:
                with open(os.path.join(root, name), "rb") as handle:
                    os.fsync(handle.fileno())
        if target.exists():
            # Two renames: a folder cannot be swapped in one. Between them only the retired copy
            # exists; a failure there puts it back, and a crash there is undone by recover_directory.
            retired = target.with_name(f"{_RETIRED_PREFIX.format(name=target.name)}{os.getpid()}")
            shutil.rmtree(retired, ignore_errors=True)  # a stale copy: target exists, so it is a duplicate
            os.replace(target, retired)
            try:
                os.replace(staging, target)
            except BaseException:
                os.replace(retired, target)
                raise
            _fsync_directory(target.parent)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
            _fsync_directory(target.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        os.close(lock)


_STAGING_PREFIX = ".{name}.tmp-"
_RETIRED_PREFIX = ".{name}.old-"


def recover_directory(target: str | Path) -> bool:
    """Put back the previous copy of ``target`` if a crash hit between :func:`atomic_directory`'s renames.

    Returns True when a retired copy (``.NAME.old-PID``) was restored. When ``target`` exists,
    leftover retired copies are only stale duplicates and are left for :func:`atomic_directory`.
    """
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return False
    retired = sorted(
        target.parent.glob(f"{_RETIRED_PREFIX.format(name=target.name)}*"),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for candidate in retired:
        try:
            os.replace(candidate, target)
        except OSError:  # another process restored it first, or it vanished
            continue
        return True
    return False


def _fsync_directory(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
