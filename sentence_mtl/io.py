"""Files on disk: atomic writes of files and folders (a crash or a full disk never leaves a half-written
output behind), and the cache folder for what the package derives once and reuses.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sentence_mtl.errors import InvalidInputError


def cache_root() -> Path:
    """``$SENTENCE_MTL_CACHE``, default ``~/.cache/sentence_mtl``: fetched models and exported runtimes."""
    return Path(os.environ.get("SENTENCE_MTL_CACHE", Path.home() / ".cache" / "sentence_mtl"))


def write_json(path: Path, value: Any) -> None:
    """Human-readable JSON config (two-space indent, UTF-8 kept as is), as sentence-transformers writes it."""
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary sibling and one rename, so readers never see half of it."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        handle.write(text)


@contextmanager
def atomic_file(
    path: str | Path, mode: str = "w", encoding: str | None = None, newline: str | None = None
) -> Iterator[IO[Any]]:
    """Yield a handle on a temporary sibling ``.NAME.xxxx.tmp`` that replaces ``path`` once the body succeeds.

    A file written over minutes (predictions, embeddings) is only visible once complete: if the
    body raises, the temporary is deleted and an existing ``path`` keeps its old content. The new
    file gets the permissions a plain ``open`` would give it, not ``mkstemp``'s owner-only ones.
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _NEW_FILE_MODE)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


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
    only after the new one is in place. A previous copy that a crash left retired is restored first.
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
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
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
