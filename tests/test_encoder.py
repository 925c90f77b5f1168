"""SentenceEncoder: parity with sentence-transformers, loading paths, encode behaviour, save round trip."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import RemoteEntryNotFoundError
from sentence_transformers import SentenceTransformer
from sentence_transformers.models import Transformer as STTransformer

from sentence_mtl import SentenceEncoder
from sentence_mtl.encoder.model_files import ModelSource, packaged_model_path
from sentence_mtl.encoder.transformer import Transformer
from sentence_mtl.errors import InvalidInputError, InvalidTypeError, ModelLoadError


def varied_sentences() -> list[str]:
    """260 sentences: short and long (truncated at 256 tokens), unicode, single words, odd spacing."""
    subjects = [
        "The cat",
        "A stock market analyst",
        "My grandmother",
        "This laptop",
        "The new stadium",
        "Rain",
        "Our CEO",
        "Ce vieux château",
    ]
    verbs = [
        "quietly watched",
        "strongly criticised",
        "could not explain",
        "celebrated",
        "ignored",
        "wrote about",
    ]
    objects = [
        "the sunset over the bay.",
        "quarterly earnings",
        "a recipe for lemon cake!",
        "why? because.",
        "the 3rd of May, 2024",
    ]
    sentences = [f"{s} {v} {o}" for s, v, o in itertools.product(subjects, verbs, objects)]
    sentences += [
        "word",
        "Hi",
        "",
        "   leading and trailing spaces   ",
        "Tabs\tand\nnewlines",
        "Café naïve façade déjà vu",
        "日本語の文章を埋め込みます。",
        "Привет, как дела?",
        "emoji 🙂🚀🔥",
        "ÅÄÖ åäö ß ñ",
        "مرحبا بالعالم",
        "数学 and English mixed",
        "UPPER CASE SHOUTING",
        "1234567890",
    ]
    sentences += [" ".join(["long"] * n) + " end." for n in (100, 250, 300, 600)]
    sentences += ["A very long review that goes on and on about everything. " * k for k in (20, 40)]
    return sentences


def test_parity_with_sentence_transformers_on_the_packaged_model(packaged_encoder: SentenceEncoder) -> None:
    sentences = varied_sentences()
    assert len(sentences) >= 200
    reference = SentenceTransformer(str(packaged_model_path()), device="cpu").encode(sentences, batch_size=32)
    ours = packaged_encoder.encode(sentences, batch_size=32)
    assert ours.dtype == np.float32 and ours.shape == reference.shape == (len(sentences), 384)
    cosines = (ours * reference).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert cosines.min() >= 0.99999
    assert packaged_encoder.last_truncated == 3  # 300 and 600 words, and the 40-fold review


def test_packaged_model_settings(packaged_encoder: SentenceEncoder) -> None:
    summary = packaged_encoder.describe()
    assert summary["pooling"] == "mean" and summary["normalize"] and summary["projection"] == "none"
    assert summary["embedding_dim"] == 384 and summary["layers"] == 6 and summary["max_length"] == 256
    vectors = packaged_encoder.encode(["a", "b c"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_qwen2_dir"])
def test_tiny_models_match_sentence_transformers(fixture: str, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(fixture)
    sentences = varied_sentences()[:60]
    ours = SentenceEncoder.from_pretrained(folder, device="cpu").encode(sentences, batch_size=16)
    reference = SentenceTransformer(str(folder), device="cpu").encode(sentences, batch_size=16)
    np.testing.assert_allclose(ours, reference, atol=2e-5)


def test_bge_style_folder_loads_as_cls_plus_normalize(tiny_bert_dir: Path) -> None:
    summary = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu").describe()
    assert (summary["pooling"], summary["normalize"], summary["projection"]) == ("cls", True, "none")


def test_stella_style_folder_loads_mean_dense_and_prompts(tiny_qwen2_dir: Path) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_qwen2_dir, device="cpu")
    summary = encoder.describe()
    assert (summary["pooling"], summary["normalize"]) == ("mean", False)
    assert summary["projection"] == "48 → 24 (identity)" and encoder.embedding_dim == 24
    assert "s2s_query" in summary["prompts"]
    with_prompt = encoder.encode(["same text"], prompt="s2s_query")
    reference = SentenceTransformer(str(tiny_qwen2_dir), device="cpu").encode(
        ["same text"], prompt_name="s2s_query"
    )
    np.testing.assert_allclose(with_prompt, reference, atol=2e-5)
    assert not np.allclose(with_prompt, encoder.encode(["same text"]))


def test_plain_hugging_face_model_defaults_to_mean_pooling(tiny_bert_dir: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_bert_dir / name, plain / name)
    summary = SentenceEncoder.from_pretrained(plain, device="cpu").describe()
    assert (summary["pooling"], summary["normalize"], summary["projection"]) == ("mean", False, "none")


def test_missing_parameter_free_normalize_folder_is_fine(tiny_bert_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_bert_dir, tmp_path / "copy")
    shutil.rmtree(copy / "2_Normalize")
    assert SentenceEncoder.from_pretrained(copy, device="cpu").normalize


def test_hub_models_are_read_file_by_file(tiny_qwen2_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requested: list[str] = []

    def fake_download(repo_id: str, filename: str) -> str:
        requested.append(filename)
        path = tiny_qwen2_dir / filename
        if not path.is_file():
            raise RemoteEntryNotFoundError(f"{filename} not in {repo_id}", response=None)
        return str(path)

    monkeypatch.setattr("sentence_mtl.encoder.model_files.hf_hub_download", fake_download)
    monkeypatch.setattr(ModelSource, "pretrained_location", lambda self, subfolder="": str(tiny_qwen2_dir))
    encoder = SentenceEncoder.from_pretrained("NovaSearch/stella-like", device="cpu")
    assert encoder.embedding_dim == 24 and encoder.pooling.mode == "mean"
    assert "2_Dense_24/model.safetensors" in requested and "modules.json" in requested


def test_hub_name_while_offline_names_the_offline_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="all-MiniLM-L6-v2"):
        SentenceEncoder.from_pretrained("BAAI/bge-large-en-v1.5-not-cached")


def test_remote_code_needs_explicit_trust(tiny_bert_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_bert_dir, tmp_path / "remote")
    config = json.loads((copy / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="trust_remote_code=True"):
        SentenceEncoder.from_pretrained(copy)


@pytest.mark.parametrize(
    ("path", "message"),
    [("./no/such/folder", "does not exist"), ("conftest.py", "not a model folder")],
)
def test_bad_model_paths_are_reported(path: str, message: str, tmp_path: Path) -> None:
    target = path
    if path == "conftest.py":
        (tmp_path / "empty").mkdir()
        target = str(tmp_path / "empty")
    with pytest.raises(ModelLoadError, match=message):
        SentenceEncoder.from_pretrained(target)


def test_overrides_change_the_design(tiny_bert_dir: Path) -> None:
    encoder = SentenceEncoder.from_pretrained(
        tiny_bert_dir, pooling="max", projection_dim=8, normalize=False, max_length=16, device="cpu"
    )
    assert (encoder.pooling.mode, encoder.embedding_dim, encoder.normalize, encoder.max_length) == (
        "max",
        8,
        False,
        16,
    )
    again = SentenceEncoder.from_pretrained(tiny_bert_dir, projection_dim=8, device="cpu")
    torch.testing.assert_close(encoder.projection.linear.weight, again.projection.linear.weight)
    with pytest.raises(InvalidInputError, match="Valid pooling modes"):
        SentenceEncoder.from_pretrained(tiny_bert_dir, pooling="weighted")


def test_encode_keeps_input_order_and_batch_size_does_not_matter(packaged_encoder: SentenceEncoder) -> None:
    sentences = varied_sentences()[:70]
    together = packaged_encoder.encode(sentences, batch_size=64)
    one_by_one = packaged_encoder.encode(sentences, batch_size=1)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    singles = np.stack([packaged_encoder.encode(sentence)[0] for sentence in sentences[:5]])
    np.testing.assert_allclose(together[:5], singles, atol=1e-5)
    reversed_order = packaged_encoder.encode(sentences[::-1], batch_size=7)
    np.testing.assert_allclose(reversed_order[::-1], together, atol=1e-5)


def test_encode_options(packaged_encoder: SentenceEncoder) -> None:
    raw = packaged_encoder.encode(["hello there", "general"], normalize=False, convert_to="tensor")
    assert isinstance(raw, torch.Tensor) and raw.dtype == torch.float32
    assert not torch.allclose(raw.norm(dim=1), torch.ones(2))
    normalised = packaged_encoder.encode(["hello there", "general"])
    np.testing.assert_allclose(torch.nn.functional.normalize(raw, dim=1).numpy(), normalised, atol=1e-6)


def test_truncation_is_counted_and_warned_once(packaged_encoder: SentenceEncoder, caplog) -> None:
    long_texts = ["word " * 400] * 40 + ["short"]
    with caplog.at_level(logging.WARNING, logger="sentence_mtl.encoder.sentence_encoder"):
        packaged_encoder.encode(long_texts, batch_size=4)
    warnings = [record for record in caplog.records if "truncated" in record.getMessage()]
    assert len(warnings) == 1 and "40 of 41" in warnings[0].getMessage()
    assert packaged_encoder.last_truncated == 40


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (([],), InvalidInputError, "empty"),
        ((["ok", 3, "fine"],), InvalidTypeError, r"sentences\[1\] is int"),
        ((["ok", None],), InvalidTypeError, r"sentences\[1\] is NoneType"),
        ((42,), InvalidTypeError, "string or a list"),
        ((["ok"], 0), InvalidInputError, "batch_size"),
        ((["ok"], -3), InvalidInputError, "batch_size"),
    ],
)
def test_encode_rejects_bad_input(packaged_encoder: SentenceEncoder, arguments, error, message) -> None:
    with pytest.raises(error, match=message):
        packaged_encoder.encode(*arguments)


def test_fp16_on_cpu_is_refused(packaged_encoder: SentenceEncoder) -> None:
    with pytest.raises(InvalidInputError, match="bf16"):
        packaged_encoder.encode(["x"], precision="fp16", device="cpu")


def test_bf16_stays_close_to_fp32(packaged_encoder: SentenceEncoder) -> None:
    sentences = varied_sentences()[:40]
    exact = packaged_encoder.encode(sentences)
    low = packaged_encoder.encode(sentences, precision="bf16")
    assert low.dtype == np.float32
    assert (exact * low).sum(axis=1).min() > 0.99


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_qwen2_dir"])
def test_save_round_trips_in_both_libraries(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    folder = request.getfixturevalue(fixture)
    encoder = SentenceEncoder.from_pretrained(folder, projection_dim=12, normalize=True, device="cpu")
    sentences = varied_sentences()[:30]
    expected = encoder.encode(sentences)
    saved = encoder.save(tmp_path / "saved")
    np.testing.assert_allclose(
        SentenceEncoder.from_pretrained(saved, device="cpu").encode(sentences), expected, atol=1e-6
    )
    np.testing.assert_allclose(
        SentenceTransformer(str(saved), device="cpu").encode(sentences), expected, atol=2e-5
    )


def test_save_never_replaces_existing_work_silently(tiny_bert_dir: Path, tmp_path: Path) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(InvalidInputError, match="not empty"):
        encoder.save(target)
    assert (target / "keep.txt").read_text() == "precious"
    encoder.save(target, overwrite=True)
    assert (target / "modules.json").is_file() and not (target / "keep.txt").exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


# ---------------------------------------------------------------------- module folders and modules.json


def test_saved_modules_json_lists_each_module_folder(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_qwen2_dir, normalize=True, device="cpu")
    saved = encoder.save(tmp_path / "saved")
    modules = json.loads((saved / "modules.json").read_text())
    assert [(module["idx"], module["path"], module["type"].rsplit(".", 1)[-1]) for module in modules] == [
        (0, "", "Transformer"),
        (1, "1_Pooling", "Pooling"),
        (2, "2_Dense", "Dense"),
        (3, "3_Normalize", "Normalize"),
    ]
    assert json.loads((saved / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"] == 48
    assert json.loads((saved / "sentence_bert_config.json").read_text()) == {
        "max_seq_length": 96,
        "do_lower_case": False,
    }


def test_transformer_module_round_trips_its_settings(tiny_bert_dir: Path, tmp_path: Path) -> None:
    loaded = Transformer.load(ModelSource(name="bert", local_dir=tiny_bert_dir), "")
    assert (loaded.max_seq_length, loaded.do_lower_case, loaded.hidden_size) == (64, False, 32)
    changed = Transformer(loaded.model, loaded.tokenizer, max_seq_length=40, do_lower_case=True)
    changed.save(tmp_path)
    again = Transformer.load(ModelSource(name="saved", local_dir=tmp_path), "")
    assert (again.max_seq_length, again.do_lower_case) == (40, True)
    for (name, expected), (_, actual) in zip(
        loaded.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, msg=name)
    theirs = STTransformer.load(str(tmp_path))
    assert (theirs.max_seq_length, theirs.do_lower_case) == (40, True)


def test_plain_transformer_reads_no_settings_and_caps_length(tiny_bert_dir: Path) -> None:
    plain = Transformer.load_plain(ModelSource(name="bert", local_dir=tiny_bert_dir))
    assert (plain.max_seq_length, plain.do_lower_case) == (None, False)
    assert plain.resolve_max_length(None) == 128  # the tokenizer allows 512, the position table 128
    assert plain.resolve_max_length(20) == 20 and plain.resolve_max_length(1000) == 128


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        ([("", "Transformer"), ("2_Normalize", "Normalize")], "modules.json has no Pooling module"),
        ([("", "Transformer"), ("1_Pooling", "CNN")], r"found unsupported: \['CNN'\]"),
        ([("1_Pooling", "Pooling"), ("", "Transformer")], "a model must be a Transformer followed by"),
    ],
)
def test_unsupported_module_layouts_are_refused(
    modules: list[tuple[str, str]], message: str, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(tiny_bert_dir, tmp_path / "copy")
    entries = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(modules)
    ]
    (copy / "modules.json").write_text(json.dumps(entries))
    with pytest.raises(ModelLoadError, match=message):
        SentenceEncoder.from_pretrained(copy, device="cpu")


def test_a_max_length_past_the_model_is_lowered_with_one_warning(tiny_bert_dir: Path, caplog) -> None:
    with caplog.at_level("WARNING", logger="sentence_mtl"):
        encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, max_length=100_000, device="cpu")
    assert encoder.max_length == 128  # the tiny BERT's position embeddings
    warnings = [record.getMessage() for record in caplog.records if "max_length" in record.getMessage()]
    assert warnings == [
        "max_length 100000 is more than the model's 128 positions; texts are truncated to 128 tokens"
    ]
