"""Inference runtimes: ONNX Runtime gives torch's vectors, int8 stays close, exports are cached by content."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
import torch

from sentence_mtl import SentenceEncoder
from sentence_mtl.analysis.similarity import min_cosine
from sentence_mtl.encoder.onnx_export import MODEL_FILE, exported_backbone
from sentence_mtl.encoder.runtimes import OnnxBackbone
from sentence_mtl.errors import InvalidInputError, ModelLoadError
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
