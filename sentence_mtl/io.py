"""Atomic folder writes: a crash or a full disk never leaves a half-written model behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sentence_mtl.errors import InvalidInputError


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary sibling and one rename, so readers never see half of it."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@contextmanager
def atomic_directory(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` in one rename.

    If the body raises, the temporary folder is removed and ``target`` is untouched. An existing
    non-empty ``target`` is only replaced when ``overwrite`` is true, and the old copy is deleted
    only after the new one is in place.
    """
    target = Path(target)
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
            retired = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
