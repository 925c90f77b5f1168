"""Writing predictions (TSV, CSV, JSONL) and streamed .npy embeddings, atomically."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from sentence_mtl.errors import InvalidInputError
from sentence_mtl.files import writing as output_files
from sentence_mtl.files.destination import Destination
from sentence_mtl.files.reading import read_text_rows
from sentence_mtl.files.writing import (
    EmbeddingWriter,
    PredictionWriter,
    check_npy_name,
    prediction_columns,
    prediction_format_of,
)
from sentence_mtl.model.tasks import TaskSpec

TASKS = [TaskSpec("topic", ["money", "sport"]), TaskSpec("mood", ["bad", "good"])]
TEXTS = ["tab\there", "line\nbreak, with comma", 'a "quoted" word']
PREDICTIONS = [
    {
        "topic": {"label": "sport", "probability": 0.75, "distribution": {"money": 0.25, "sport": 0.75}},
        "mood": {"label": "good", "probability": 0.5, "distribution": {"bad": 0.5, "good": 0.5}},
    }
    for _ in TEXTS
]


@contextmanager
def prediction_output(
    path: Path | str, tasks: list[TaskSpec], distribution: bool = False, output_format: str | None = None
) -> Iterator[PredictionWriter]:
    """A writer on ``path``, opened as ``open_files`` opens a prediction output."""
    target = Destination(path)
    output_format = prediction_format_of(path, output_format, target.is_stream)
    with target.open(binary=False) as output:
        yield PredictionWriter(output, output_format, tasks, distribution)


@contextmanager
def embedding_output(path: Path | str, dim: int) -> Iterator[EmbeddingWriter]:
    """A writer on ``path``, opened as ``open_files`` opens an embedding output; finished on success."""
    target = Destination(path)
    if not target.is_stream:
        check_npy_name(path)
    with target.open(binary=True) as output:
        writer = EmbeddingWriter(output, dim)
        yield writer
        writer.finish()


def write_predictions(path: Path, distribution: bool = False) -> str:
    with prediction_output(path, TASKS, distribution=distribution) as writer:
        writer.write(TEXTS[:1], PREDICTIONS[:1])
        writer.write(TEXTS[1:], PREDICTIONS[1:])
    assert writer.rows_written == len(TEXTS)
    return path.read_text(encoding="utf-8")


def test_columns_name_each_task_and_with_distribution_each_label() -> None:
    assert prediction_columns(TASKS) == ["text", "topic", "topic_probability", "mood", "mood_probability"]
    assert prediction_columns(TASKS, distribution=True)[3:5] == ["topic_p_money", "topic_p_sport"]
    with pytest.raises(InvalidInputError, match="would repeat text; rename the task"):
        prediction_columns([TaskSpec("text", ["a", "b"])])


def test_tsv_turns_tabs_and_line_breaks_into_spaces_so_it_reads_back(tmp_path: Path) -> None:
    text = write_predictions(tmp_path / "out.tsv")
    lines = text.splitlines()
    assert lines[0] == "text\ttopic\ttopic_probability\tmood\tmood_probability"
    assert lines[1] == "tab here\tsport\t0.75\tgood\t0.5"
    assert all(line.count("\t") == 4 for line in lines)
    assert [row.text for row in read_text_rows(tmp_path / "out.tsv")] == [
        "tab here",
        "line break, with comma",
        'a "quoted" word',
    ]


def test_csv_quotes_and_keeps_every_text_as_is(tmp_path: Path) -> None:
    write_predictions(tmp_path / "out.csv", distribution=True)
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["text"] for row in table] == TEXTS
    assert table[0]["topic"] == "sport" and float(table[0]["topic_p_money"]) == 0.25
    assert [row.text for row in read_text_rows(tmp_path / "out.csv")] == TEXTS


def test_jsonl_nests_predictions_as_predict_returns_them(tmp_path: Path) -> None:
    lines = write_predictions(tmp_path / "out.jsonl", distribution=True).splitlines()
    assert [json.loads(line) for line in lines] == [
        {"text": text, **prediction} for text, prediction in zip(TEXTS, PREDICTIONS, strict=True)
    ]


def test_stdout_gets_tsv_unless_a_format_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    with prediction_output("-", TASKS) as writer:
        writer.write(TEXTS[:1], PREDICTIONS[:1])
    assert capsys.readouterr().out.splitlines()[1] == "tab here\tsport\t0.75\tgood\t0.5"
    with prediction_output("-", TASKS, output_format="jsonl") as writer:
        writer.write(TEXTS[:1], PREDICTIONS[:1])
    assert json.loads(capsys.readouterr().out)["topic"]["label"] == "sport"


def test_a_failure_leaves_no_file_and_keeps_an_existing_one(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), prediction_output(tmp_path / "new.tsv", TASKS) as writer:
        writer.write(TEXTS, PREDICTIONS)
        raise RuntimeError("boom")
    old = tmp_path / "old.npy"
    old.write_bytes(b"previous content")
    with pytest.raises(RuntimeError, match="boom"), embedding_output(old, 4) as vectors:
        vectors.append(np.ones((2, 4)))
        raise RuntimeError("boom")
    assert old.read_bytes() == b"previous content"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["old.npy"]


def test_npy_grows_chunk_by_chunk_and_loads_with_mmap(tmp_path: Path) -> None:
    chunks = [np.arange(12, dtype=np.float64).reshape(3, 4), np.full((2, 4), -1.5, dtype=np.float32)]
    with embedding_output(tmp_path / "vectors.npy", 4) as writer:
        for chunk in chunks:
            writer.append(chunk)
    loaded = np.load(tmp_path / "vectors.npy", mmap_mode="r")
    assert isinstance(loaded, np.memmap) and loaded.dtype == np.float32 and loaded.shape == (5, 4)
    np.testing.assert_array_equal(loaded, np.concatenate(chunks).astype(np.float32))
    with embedding_output(tmp_path / "empty.npy", 4):
        pass
    assert np.load(tmp_path / "empty.npy").shape == (0, 4)


def test_npy_refuses_a_header_that_would_change_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_header = output_files._npy_header
    monkeypatch.setattr(output_files, "_npy_header", lambda rows, dim: real_header(rows, dim) + b" " * rows)
    with (
        pytest.raises(RuntimeError, match="cannot be rewritten in place"),
        embedding_output(tmp_path / "vectors.npy", 4) as writer,
    ):
        writer.append(np.zeros((2, 4)))
    assert not list(tmp_path.iterdir())


def test_bad_output_paths_are_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot go to standard output"), embedding_output("-", 4):
        pass
    with (
        pytest.raises(InvalidInputError, match=r"name the output .*vectors\.npy"),
        embedding_output(tmp_path / "vectors.txt", 4),
    ):
        pass
    with (
        pytest.raises(InvalidInputError, match="is a folder; give a file path"),
        prediction_output(tmp_path, TASKS, output_format="tsv"),
    ):
        pass
    with (
        pytest.raises(InvalidInputError, match=r"name the file \.tsv or \.csv or \.jsonl"),
        prediction_output(tmp_path / "out.txt", TASKS),
    ):
        pass
    with (
        pytest.raises(InvalidInputError, match="vectors of shape"),
        embedding_output(tmp_path / "v.npy", 4) as writer,
    ):
        writer.append(np.zeros((2, 3)))


def test_a_path_that_is_standard_output_is_written_as_standard_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--output /dev/stdout`` (here ``/dev/fd/N`` of this stdout): appended to as ``-`` would, never
    replaced, so ``>> log.tsv`` keeps what the log held; the summary then goes to stderr."""
    log = tmp_path / "log.tsv"
    log.write_text("earlier line\n", encoding="utf-8")
    stdout = log.open("a", encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", stdout)
    destination = Destination(f"/dev/fd/{stdout.fileno()}")
    assert destination.is_stdout and destination.is_stream
    with prediction_output(f"/dev/fd/{stdout.fileno()}", TASKS) as writer:
        writer.write(TEXTS[:1], PREDICTIONS[:1])
    stdout.close()
    assert log.read_text(encoding="utf-8").splitlines()[:2] == [
        "earlier line",
        "text\ttopic\ttopic_probability\tmood\tmood_probability",
    ]
    assert hidden_files(tmp_path) == []


def hidden_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))
