"""Property-based tests: arbitrary text and values give a correct result or the documented error.

encode and predict run on the tiny BERT (CLS pooling + Normalize, 64 tokens); the data readers on
files written to a temporary folder, each checked against a small oracle of what they should read.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sentence_mtl import MultiTaskModel, SentenceEncoder, TaskSpec
from sentence_mtl.data.task_folders import load_task_folder
from sentence_mtl.errors import DataError, InvalidInputError, InvalidTypeError, SentenceMTLError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
WHITESPACE = " \t\n\r\x0b\x0c\u00a0\u2003\u3000\u200b"

# Any valid Unicode (no lone surrogates: they are not text, see the surrogate tests below), blank
# strings, and long strings of repeated words well past the 64-token limit.
unicode_text = st.text(max_size=60)
blank_text = st.text(alphabet=WHITESPACE, max_size=12)
long_text = st.builds(lambda word, n: (word + " ") * n, st.text(min_size=1, max_size=8), st.integers(70, 600))
any_text = st.one_of(unicode_text, blank_text, long_text)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Hundreds of tiny forward passes: one thread avoids oversubscribing a busy machine's cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> SentenceEncoder:
    return SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")


@pytest.fixture(scope="module")
def model(encoder: SentenceEncoder) -> MultiTaskModel:
    return MultiTaskModel(
        encoder, [TaskSpec("topic", ["food", "money", "sport"]), TaskSpec("mood", ["bad", "good"])]
    )


# ---------------------------------------------------------------------- encode and predict


@FAST
@given(texts=st.lists(any_text, min_size=1, max_size=6))
def test_encode_gives_finite_unit_vectors_in_input_order(encoder: SentenceEncoder, texts: list[str]) -> None:
    vectors = encoder.encode(texts, batch_size=4)
    assert vectors.shape == (len(texts), encoder.embedding_dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    full = encoder.tokenizer.hf_tokenizer(texts, truncation=False)["input_ids"]
    assert encoder.last_truncated == sum(len(ids) > encoder.max_length for ids in full)
    reversed_vectors = encoder.encode(texts[::-1], batch_size=3)
    np.testing.assert_allclose(reversed_vectors[::-1], vectors, atol=1e-5)


@FAST
@given(
    values=st.lists(
        st.one_of(unicode_text, st.integers(), st.none(), st.floats(), st.binary(max_size=4), st.booleans()),
        max_size=5,
    )
)
def test_encode_rejects_non_strings_by_position(encoder: SentenceEncoder, values: list[object]) -> None:
    bad = [index for index, value in enumerate(values) if not isinstance(value, str)]
    if not values:
        with pytest.raises(InvalidInputError, match="empty"):
            encoder.encode(values)
    elif bad:
        with pytest.raises(
            InvalidTypeError, match=rf"sentences\[{bad[0]}\] is {type(values[bad[0]]).__name__}"
        ):
            encoder.encode(values)
    else:
        assert encoder.encode(values).shape == (len(values), encoder.embedding_dim)


@FAST
@given(
    value=st.one_of(st.integers(), st.none(), st.floats(), st.binary(), st.dictionaries(st.text(), st.text()))
)
def test_encode_rejects_a_non_sequence(encoder: SentenceEncoder, value: object) -> None:
    with pytest.raises(SentenceMTLError):
        encoder.encode(value)


@FAST
@given(texts=st.one_of(any_text, st.lists(any_text, min_size=1, max_size=5)))
def test_predict_gives_a_known_label_and_its_probability_per_task(model: MultiTaskModel, texts) -> None:
    results = model.predict(texts, batch_size=2, return_distribution=True)
    assert len(results) == (1 if isinstance(texts, str) else len(texts))
    for result in results:
        assert set(result) == {"topic", "mood"}
        for task in model.tasks:
            prediction = result[task.name]
            assert prediction["label"] in task.labels
            assert 0.0 < prediction["probability"] <= 1.0
            distribution = prediction["distribution"]
            assert sum(distribution.values()) == pytest.approx(1.0, abs=1e-5)
            assert prediction["probability"] == pytest.approx(max(distribution.values()))


# ---------------------------------------------------------------------- data readers


def expected_table(rows: list[tuple[object, object]], blank_line: bool) -> tuple[list[str], list[str]] | None:
    """What a reader must return for ``rows`` (texts, label per row), or None where a DataError is due.

    ``blank_line``: a row whose whole line is blank is skipped like an empty line (TSV, CSV).
    """
    texts, names = [], []
    for text, label in rows:
        if blank_line and isinstance(text, str) and isinstance(label, str) and not (text + label).strip():
            continue
        if not isinstance(text, str) or not text.strip():
            return None
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            return None
        name = str(label).strip()
        if not name:
            return None
        texts.append(text)
        names.append(name)
    if len(set(names)) < 2:
        return None
    return texts, names


def check_reader(filename: str, content: str, rows: list[tuple[object, object]], blank_line: bool) -> None:
    expected = expected_table(rows, blank_line)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / filename).write_text(content, encoding="utf-8", newline="")
        try:
            task = load_task_folder("t", folder, dev_fraction=0)
        except DataError as error:
            event("DataError")
            assert expected is None, f"unexpected DataError: {error}"
            assert folder in str(error)  # every data error names the file
            return
    event("read")
    assert expected is not None, "a bad row was accepted"
    texts, names = expected
    assert task.train.texts == texts
    assert task.labels == sorted(set(names))
    assert [task.labels[i] for i in task.train.labels] == names


def tables(text, label, valid_text, valid_label) -> st.SearchStrategy[list[tuple[object, object]]]:
    """Half the time well-formed rows (the read path), half the time anything (the error path)."""
    good = st.lists(st.tuples(valid_text, valid_label), min_size=2, max_size=8)
    anything = st.lists(st.tuples(text, label), min_size=1, max_size=8)
    return st.one_of(good, anything)


def non_blank(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return strategy.filter(lambda text: text.strip())


good_labels = st.sampled_from(["pos", "neg", " pos ", "neutral", "x\u00e9", "2"])
label_names = st.one_of(good_labels, st.sampled_from(["", " ", "\u3000"]))


@FAST
@given(
    rows=tables(
        st.one_of(
            any_text, st.integers(), st.none(), st.floats(allow_nan=False), st.lists(st.text(), max_size=2)
        ),
        st.one_of(label_names, st.integers(-3, 3), st.booleans(), st.none(), st.floats(allow_nan=False)),
        non_blank(unicode_text),
        st.one_of(good_labels, st.integers(-3, 3)),
    )
)
def test_jsonl_reader_returns_the_rows_or_a_data_error(rows: list[tuple[object, object]]) -> None:
    content = "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows)
    check_reader("train.jsonl", content, rows, blank_line=False)


# TSV is unquoted: a text cannot hold a tab or a line break.
no_tab_or_newline = st.text(
    alphabet=st.characters(exclude_characters="\t\n", exclude_categories=["Cs"]), max_size=60
)
tsv_blank = st.text(alphabet=WHITESPACE.replace("\t", "").replace("\n", ""), max_size=8)


@FAST
@given(
    rows=tables(
        st.one_of(no_tab_or_newline, tsv_blank), label_names, non_blank(no_tab_or_newline), good_labels
    )
)
def test_tsv_reader_returns_the_rows_or_a_data_error(rows: list[tuple[str, str]]) -> None:
    content = "text\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows)
    check_reader("train.tsv", content, rows, blank_line=True)


@FAST
@given(rows=tables(any_text, label_names, non_blank(any_text), good_labels))
def test_csv_reader_returns_the_rows_or_a_data_error(rows: list[tuple[str, str]]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    check_reader("train.csv", buffer.getvalue(), rows, blank_line=True)


# ---------------------------------------------------------------------- lone surrogates


def test_a_lone_surrogate_in_encode_is_a_package_error(encoder: SentenceEncoder) -> None:
    with pytest.raises(SentenceMTLError, match=r"sentences\[0\]"):
        encoder.encode(["\ud800 broken"])


def test_a_lone_surrogate_in_jsonl_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(
        '{"text": "fine", "label": "a"}\n{"text": "bad \\ud800", "label": "b"}\n', encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"train\.jsonl, line 2"):
        load_task_folder("t", tmp_path, dev_fraction=0)
