"""The collation seam: texts → model inputs, tokenised once per split and padded per batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sentence_mtl import MultiTaskModel, SentenceEncoder, TaskSpec

TEXTS = ["a short one", "a somewhat longer sentence with more words in it", "mid length text", "x"]


@pytest.fixture(params=["tiny_bert_dir", "tiny_qwen2_dir"])  # right and left padding
def encoder(request: pytest.FixtureRequest) -> SentenceEncoder:
    return SentenceEncoder.from_pretrained(request.getfixturevalue(request.param), device="cpu")


def test_the_collator_gives_the_batch_that_tokenize_gives(encoder: SentenceEncoder) -> None:
    collator = encoder.collator("cpu")
    batch = collator(TEXTS)
    expected = encoder.tokenize(TEXTS)
    assert batch.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(batch[key], value) and batch[key].device == torch.device("cpu")


def test_tokenising_once_then_padding_rows_equals_padding_those_texts(encoder: SentenceEncoder) -> None:
    collator = encoder.collator()
    tokenized = collator.tokenize(TEXTS)
    assert np.array_equal(tokenized.lengths, [len(ids) for ids in tokenized.ids])
    rows = [3, 0]
    padded = collator.collate([tokenized.ids[i] for i in rows])
    direct = collator([TEXTS[i] for i in rows])
    for key in direct:
        assert torch.equal(padded[key], direct[key])
    assert padded["input_ids"].shape[1] == max(tokenized.lengths[rows])  # padded to its own longest row


def test_the_model_seam_embeds_like_encode(tiny_bert_dir: Path) -> None:
    """collator → embed → classify, the training path, gives the vectors and logits of inference."""
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    model = MultiTaskModel(encoder, [TaskSpec("topic", ["a", "b", "c"])]).eval()
    with torch.no_grad():
        embeddings = model.embed(model.collator()(TEXTS))
        logits = model(model.collator()(TEXTS), "topic")
        torch.testing.assert_close(logits, model.classify(embeddings, "topic"))
    expected = encoder.encode(TEXTS, convert_to="tensor")
    torch.testing.assert_close(embeddings, expected, rtol=1e-5, atol=1e-6)


def test_truncation_is_counted_at_the_collators_max_length(tiny_bert_dir: Path) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, max_length=8, device="cpu")
    collator = encoder.collator()
    tokenized = collator.tokenize(["one two three four five six seven eight nine ten", "short"])
    assert collator.max_length == 8 and tokenized.truncated == 1 and tokenized.lengths.max() == 8
