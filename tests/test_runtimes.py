"""Inference runtimes: ONNX Runtime gives torch's vectors, int8 stays close, exports are cached by content."""

from __future__ import annotations

import builtins
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ScriptRunner

from sentence_mtl import SentenceEncoder
from sentence_mtl.analysis.similarity import min_cosine
from sentence_mtl.encoder.onnx_export import MODEL_FILE, exported_backbone
from sentence_mtl.encoder.runtimes import OnnxBackbone
from sentence_mtl.errors import InvalidInputError, ModelLoadError, SentenceMTLError
from sentence_mtl.model.multitask import MultiTaskModel
from sentence_mtl.model.tasks import TaskSpec

pytest.importorskip("onnxruntime", reason='the ONNX extra is not installed: pip install -e ".[onnx]"')

# Lengths from 1 to ~40 tokens, so batches are padded differently in every runtime.
SENTENCES = [
    "A cat.",
    "The quick brown fox jumps over the lazy dog near the river bank at dawn.",
    "Stocks fell sharply after the central bank raised interest rates again this week.",
    "Hi",
    "An unusually long sentence " + "with many repeated words " * 6 + "that ends here.",
    "Rain is expected tomorrow.",
    "¿Dónde está la biblioteca? 图书馆在哪里？",
]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SENTENCE_MTL_CACHE", str(tmp_path))
    return tmp_path / "onnx"


def exports(cache: Path) -> list[Path]:
    return sorted(cache.glob(f"*/{MODEL_FILE}"))


@pytest.mark.parametrize("model_dir", ["tiny_bert_dir", "tiny_qwen2_dir"])
def test_onnx_vectors_equal_torch(model_dir: str, cache: Path, request: pytest.FixtureRequest) -> None:
    encoder = SentenceEncoder.from_pretrained(request.getfixturevalue(model_dir), device="cpu")
    for prompt in (None, "query: "):
        expected = encoder.encode(SENTENCES, batch_size=3, prompt=prompt)
        actual = encoder.encode(SENTENCES, batch_size=3, prompt=prompt, backend="onnx")
        assert min_cosine(actual, expected) >= 0.99999
        np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_int8_runs_and_stays_close(tiny_bert_dir: Path, cache: Path) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    expected = encoder.encode(SENTENCES, batch_size=4)
    quantized = encoder.encode(SENTENCES, batch_size=4, backend="onnx", quantize="int8")
    assert quantized.shape == expected.shape and quantized.dtype == np.float32
    assert min_cosine(quantized, expected) > 0.98
    assert not np.allclose(quantized, expected, atol=1e-6), (
        "int8 gave the fp32 vectors: nothing was quantised"
    )
    assert len(exports(cache)) == 1


def test_export_is_reused_then_rebuilt_when_the_weights_change(tiny_bert_dir: Path, cache: Path) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    encoder.encode(SENTENCES, backend="onnx")
    first = exports(cache)
    assert len(first) == 1
    written = first[0].stat().st_mtime_ns

    reloaded = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")  # same weights, new object
    reloaded.encode(SENTENCES, backend="onnx")
    assert exports(cache) == first and first[0].stat().st_mtime_ns == written

    with torch.no_grad():
        reloaded.backbone.encoder.layer[0].output.dense.weight.mul_(1.5)  # as an optimizer step would
    changed = reloaded.encode(SENTENCES, backend="onnx")
    assert len(exports(cache)) == 2
    np.testing.assert_allclose(changed, reloaded.encode(SENTENCES), atol=1e-5)
    assert not np.allclose(changed, encoder.encode(SENTENCES), atol=1e-3)


def test_exported_backbone_names_the_model_that_cannot_export(
    tiny_bert_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator aten::frobnicate")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(
        ModelLoadError, match=r"cannot export BertModel to ONNX .*frobnicate.*backend='torch'"
    ):
        exported_backbone(encoder.backbone)
    assert exports(cache) == []


def test_predict_on_onnx_matches_torch(tiny_bert_dir: Path, cache: Path) -> None:
    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    model = MultiTaskModel(encoder, [TaskSpec("topic", ["a", "b", "c"]), TaskSpec("mood", ["sad", "glad"])])
    expected = model.predict(SENTENCES, return_distribution=True)
    actual = model.predict(SENTENCES, return_distribution=True, backend="onnx")
    for want, got in zip(expected, actual, strict=True):
        for task in ("topic", "mood"):
            assert got[task]["label"] == want[task]["label"]
            assert got[task]["probability"] == pytest.approx(want[task]["probability"], abs=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "tensorrt"}, "unknown backend 'tensorrt'; valid: torch, onnx"),
        ({"quantize": "int4", "backend": "onnx"}, "unknown quantize 'int4'; valid: int8 or None"),
        ({"quantize": "int8"}, "quantize='int8' runs on ONNX Runtime; pass backend='onnx'"),
        ({"backend": "onnx", "precision": "bf16"}, "precision='bf16' is a torch option"),
    ],
)
def test_bad_backend_options_are_named(tiny_bert_dir: Path, options: dict, message: str) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        encoder.encode(SENTENCES, **options)


def test_missing_onnxruntime_says_how_to_install_it(
    tiny_bert_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    real_import = builtins.__import__

    def without_onnxruntime(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("onnxruntime"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnxruntime)
    with pytest.raises(
        InvalidInputError, match=r'needs ONNX Runtime; install the ONNX extra: pip install -e "\.\[onnx\]"'
    ):
        encoder.encode(SENTENCES, backend="onnx")


def test_torch_threads_are_restored_after_an_onnx_encode(
    tiny_bert_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    threads = torch.get_num_threads()
    seen: list[int] = []
    real_call = OnnxBackbone.__call__

    def spying(self: OnnxBackbone, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return real_call(self, input_ids, attention_mask)

    monkeypatch.setattr(OnnxBackbone, "__call__", spying)
    encoder.encode(SENTENCES, backend="onnx")
    assert seen and set(seen) == {1} and torch.get_num_threads() == threads

    def failing(self: OnnxBackbone, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("session failed")

    monkeypatch.setattr(OnnxBackbone, "__call__", failing)
    with pytest.raises(RuntimeError, match="session failed"):
        encoder.encode(SENTENCES, backend="onnx")
    assert torch.get_num_threads() == threads


# ---------------------------------------------------------------------- the cache on disk


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_cached_export_is_exported_again(tiny_bert_dir: Path, cache: Path, damage: str) -> None:
    """A cut-short copy, or one overwritten with bytes of the same size, is found by its hash and rebuilt."""
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    encoder.encode(SENTENCES, backend="onnx")
    [model] = exports(cache)
    size = model.stat().st_size
    with model.open("r+b") as handle:
        if damage == "truncated":
            handle.truncate(size // 3)
        else:
            handle.seek(size // 2)
            handle.write(b"\xff" * (size // 4))  # NaN where it lands in weights

    fresh = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")  # a new run: no session in memory
    np.testing.assert_allclose(fresh.encode(SENTENCES, backend="onnx"), fresh.encode(SENTENCES), atol=1e-5)
    assert exports(cache) == [model] and model.stat().st_size == size


def test_a_file_onnx_runtime_cannot_load_names_the_folder_to_delete(
    tiny_bert_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime

    def refuse(path: str, *args: object, **kwargs: object) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Protobuf parsing failed.")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    with pytest.raises(ModelLoadError) as caught:
        encoder.encode(SENTENCES, backend="onnx")
    [model] = exports(cache)
    assert str(caught.value) == (
        f"ONNX Runtime cannot load {model} (RuntimeError: [ONNXRuntimeError] : 7 : INVALID_PROTOBUF : "
        f"Protobuf parsing failed.); delete the folder {model.parent} and run again to export it anew"
    )


@pytest.mark.parametrize("where", ["a_file", "read_only"])
def test_a_cache_that_cannot_be_written_names_the_variable_that_moves_it(
    tiny_bert_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    read_only: Callable[[Path], Path],
    where: str,
) -> None:
    root = tmp_path / "cache"
    if where == "a_file":
        root.write_text("not a folder", encoding="utf-8")
    else:
        read_only(root)
    monkeypatch.setenv("SENTENCE_MTL_CACHE", str(root))
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    with pytest.raises(SentenceMTLError) as caught:
        encoder.encode(SENTENCES, backend="onnx")
    problem = f"{root} is a file, not a folder" if where == "a_file" else "Permission denied"
    assert str(caught.value) == (
        f"cannot write the cache folder {root / 'onnx'} ({problem}); make it writable, or point "
        "SENTENCE_MTL_CACHE at a folder you can write"
    )


def test_staging_folders_that_killed_exports_left_are_removed_on_the_next_use(
    tiny_bert_dir: Path, cache: Path
) -> None:
    """Unheld and over a minute old: abandoned. Held by a live export (its lock), or just made: kept."""
    cache.mkdir(parents=True)
    abandoned, live, young = (
        cache / f".{name}.tmp-{name[:8]:_<8}" for name in ("abandoned", "live", "young")
    )
    for folder in (abandoned, live, young):
        folder.mkdir()
        (folder / "exported.onnx").write_bytes(b"partial")
    for folder in (abandoned, live):
        os.utime(folder, (time.time() - 3600, time.time() - 3600))
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu").encode(SENTENCES[:2], backend="onnx")
        assert not abandoned.exists() and live.exists() and young.exists()
    finally:
        os.close(holder)
    assert len(exports(cache)) == 1


def test_the_onnx_backend_loads_on_the_cpu_where_cuda_is_the_default(
    run_script: ScriptRunner, finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU machine the default device is CUDA, which ONNX Runtime does not use; --backend onnx alone
    must still run, as the README's commands write it."""
    monkeypatch.setenv("SENTENCE_MTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    source = tmp_path / "texts.txt"
    source.write_text("A goal in the last minute.\nRates rose again.\n", encoding="utf-8")
    output = tmp_path / "out.tsv"
    code, out, err = run_script(
        "Task2/task2.py", "--checkpoint", str(finished_run / "best"), "--backend", "onnx", "--input",
        str(source), "--output", str(output),
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith(f"wrote 2 rows to {output}") and len(output.read_text().splitlines()) == 3


def test_a_read_only_cache_that_holds_the_export_is_used(
    tiny_bert_dir: Path, cache: Path, read_only: Callable[[Path], Path]
) -> None:
    """A shared, read-only cache is fine as long as nothing has to be written to it."""
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    expected = encoder.encode(SENTENCES, backend="onnx")
    [model] = exports(cache)
    read_only(cache)
    read_only(model.parent)
    fresh = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    np.testing.assert_allclose(fresh.encode(SENTENCES, backend="onnx"), expected, atol=1e-6)
