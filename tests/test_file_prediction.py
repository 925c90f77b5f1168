"""Streaming a file through the tiny encoder and model: results as in memory, in order, bad rows named."""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sentence_mtl import MultiTaskModel, SentenceEncoder, TaskSpec
from sentence_mtl.errors import DataError, InvalidInputError, SentenceMTLError
from sentence_mtl.files.prediction import FileReport, SkippedRow, encode_file, predict_file
from sentence_mtl.files.reading import TEXT_COLUMN

TEXTS = [
    "The striker scored twice.",
    "Shares fell, then rose again.",
    "I loved this soup",
    "A much longer sentence about the weather, the match and the markets, all at once.",
    "ok",
    'She said "no" twice.',
    "Rates went up.",
]
TASKS = [TaskSpec("topic", ["money", "sport"]), TaskSpec("mood", ["bad", "calm", "good"])]


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> SentenceEncoder:
    return SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")


@pytest.fixture(scope="module")
def model(encoder: SentenceEncoder) -> MultiTaskModel:
    torch.manual_seed(5)
    return MultiTaskModel(encoder, TASKS, head="mlp").eval()


def write_input(path: Path, texts: list[str]) -> Path:
    """``texts`` in ``path``'s format, with an extra column where the format has columns."""
    if path.suffix == ".txt":
        path.write_text("".join(f"{text}\n" for text in texts), encoding="utf-8")
    elif path.suffix == ".tsv":
        path.write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows([["id", "text"], *([i, t] for i, t in enumerate(texts))])
    else:
        path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """Output rows in the nested shape of ``MultiTaskModel.predict``, whatever the file's format."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix == ".tsv":  # unquoted: a '"' is just a character
            table = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
        else:
            table = list(csv.DictReader(handle))
    return [
        {
            TEXT_COLUMN: row[TEXT_COLUMN],
            **{
                task.name: {"label": row[task.name], "probability": float(row[f"{task.name}_probability"])}
                for task in TASKS
            },
        }
        for row in table
    ]


def assert_same_predictions(found: list[dict[str, Any]], texts: list[str], model: MultiTaskModel) -> None:
    expected = model.predict(texts)
    assert [row[TEXT_COLUMN] for row in found] == texts
    for row, prediction in zip(found, expected, strict=True):
        for task in TASKS:
            assert row[task.name]["label"] == prediction[task.name]["label"]
            assert row[task.name]["probability"] == pytest.approx(
                prediction[task.name]["probability"], abs=1e-5
            )


@pytest.mark.parametrize(
    ("source_name", "destination_name"),
    [("in.txt", "out.tsv"), ("in.tsv", "out.csv"), ("in.csv", "out.jsonl"), ("in.jsonl", "out.tsv")],
)
def test_predict_file_writes_every_row_in_input_order(
    model: MultiTaskModel, tmp_path: Path, source_name: str, destination_name: str
) -> None:
    source = write_input(tmp_path / source_name, TEXTS)
    report = predict_file(model, source, tmp_path / destination_name, chunk_size=3, batch_size=2)
    assert report.rows_written == len(TEXTS) and report.skipped == []
    assert_same_predictions(read_predictions(tmp_path / destination_name), TEXTS, model)


def test_predict_file_can_add_each_labels_probability(model: MultiTaskModel, tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.txt", TEXTS[:2])
    predict_file(model, source, tmp_path / "out.jsonl", distribution=True)
    found = read_predictions(tmp_path / "out.jsonl")
    expected = model.predict(TEXTS[:2], return_distribution=True)
    for row, prediction in zip(found, expected, strict=True):
        assert row["mood"]["distribution"] == pytest.approx(prediction["mood"]["distribution"], abs=1e-5)
        assert list(row["mood"]["distribution"]) == ["bad", "calm", "good"]


def test_encode_file_matches_encode_and_loads_with_mmap(encoder: SentenceEncoder, tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", TEXTS)
    report = encode_file(encoder, source, tmp_path / "vectors.npy", chunk_size=2, batch_size=3)
    loaded = np.load(tmp_path / "vectors.npy", mmap_mode="r")
    assert isinstance(loaded, np.memmap) and loaded.shape == (len(TEXTS), encoder.embedding_dim)
    np.testing.assert_allclose(loaded, encoder.encode(TEXTS), atol=1e-5)
    assert report.rows_written == len(TEXTS) and report.destination == str(tmp_path / "vectors.npy")


def bad_file(tmp_path: Path) -> Path:
    """A JSONL file whose line 3 has an empty text and whose line 5 is not UTF-8 (line 7 is blank: no row)."""
    path = tmp_path / "bad.jsonl"
    texts = [b"first", b"second", b"", b"fourth", b"fif\xc3\x28th", b"sixth"]
    path.write_bytes(b"".join(b'{"text": "' + text + b'"}\n' for text in texts) + b"\n")
    return path


def test_a_bad_row_stops_the_run_with_its_line_and_leaves_no_output(
    model: MultiTaskModel, tmp_path: Path
) -> None:
    with pytest.raises(DataError) as caught:
        predict_file(model, bad_file(tmp_path), tmp_path / "out.tsv")
    assert str(caught.value) == (
        f"{tmp_path / 'bad.jsonl'}, line 3: the text is empty; fix the row or pass --skip-bad "
        "(skip_bad=True) to leave it out"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.jsonl"]


def test_invalid_utf8_is_named_with_its_line(encoder: SentenceEncoder, tmp_path: Path) -> None:
    path = tmp_path / "bytes.txt"
    path.write_bytes(b"fine\nnot \xff utf8\n")
    with pytest.raises(DataError, match=r"bytes\.txt, line 2: bytes that are not UTF-8 \(b'\\xff'\)"):
        encode_file(encoder, path, tmp_path / "vectors.npy")
    assert not (tmp_path / "vectors.npy").exists()


def test_skip_bad_lists_the_bad_rows_and_writes_the_others(
    model: MultiTaskModel, encoder: SentenceEncoder, tmp_path: Path
) -> None:
    good = ["first", "second", "fourth", "sixth"]
    report = predict_file(model, bad_file(tmp_path), tmp_path / "out.tsv", skip_bad=True, chunk_size=2)
    assert [row.line for row in report.skipped] == [3, 5]
    assert report.skipped[1].problem.startswith("bytes that are not UTF-8")
    assert_same_predictions(read_predictions(tmp_path / "out.tsv"), good, model)
    vectors = encode_file(encoder, bad_file(tmp_path), tmp_path / "v.npy", skip_bad=True, chunk_size=3)
    assert vectors.rows_written == 4
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), encoder.encode(good), atol=1e-5)


class FailsOnSecondChunk:
    """The model's interface, failing part-way through a file as a crash or full disk would."""

    def __init__(self, model: MultiTaskModel) -> None:
        self.tasks = model.tasks
        self._model = model
        self.calls = 0

    def predict(self, texts: list[str], **options: Any) -> list[dict[str, Any]]:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("failed in the middle of the file")
        return self._model.predict(texts, **options)


def test_a_failure_mid_file_keeps_the_existing_output_untouched(
    model: MultiTaskModel, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.txt", TEXTS)
    target = tmp_path / "out.tsv"
    target.write_text("earlier results\n", encoding="utf-8")
    failing = FailsOnSecondChunk(model)
    with pytest.raises(RuntimeError, match="middle of the file"):
        predict_file(failing, source, target, chunk_size=2)  # type: ignore[arg-type]
    assert failing.calls == 2
    assert target.read_text(encoding="utf-8") == "earlier results\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.txt", "out.tsv"]


class RecordingEncoder:
    """Records the keyword arguments of each ``encode`` call and returns zeros of the right shape."""

    embedding_dim = 3

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def encode(self, texts: list[str], **options: Any) -> np.ndarray:
        self.calls.append((list(texts), options))
        return np.zeros((len(texts), self.embedding_dim), dtype=np.float32)


def test_options_are_passed_through_untouched_per_chunk(tmp_path: Path) -> None:
    recorder = RecordingEncoder()
    source = write_input(tmp_path / "in.txt", TEXTS)
    encode_file(recorder, source, tmp_path / "v.npy", chunk_size=4, backend="custom", quantize=True)  # type: ignore[arg-type]
    assert [texts for texts, _ in recorder.calls] == [TEXTS[:4], TEXTS[4:]]
    assert recorder.calls[0][1] == {
        "convert_to": "numpy",
        "show_progress_bar": False,
        "backend": "custom",
        "quantize": True,
    }


def test_stdin_to_stdout_and_the_progress_bar(
    model: MultiTaskModel, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\nRates went up.\n"), encoding="utf-8"))
    report = predict_file(model, "-", "-", show_progress_bar=True)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "text\ttopic\ttopic_probability\tmood\tmood_probability"
    assert [line.split("\t")[0] for line in lines[1:]] == ["ok", "Rates went up."]
    assert report.source == "<stdin>" and report.destination == "<stdout>"
    assert "predict" in captured.err and "sent/s" in captured.err


def test_progress_bar_total_is_the_files_row_count(
    model: MultiTaskModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.tsv", TEXTS)
    predict_file(model, source, tmp_path / "out.tsv", show_progress_bar=True, chunk_size=4)
    assert f"{len(TEXTS)}/{len(TEXTS)}" in capsys.readouterr().err


def test_report_and_bad_arguments(model: MultiTaskModel, tmp_path: Path) -> None:
    report = FileReport("in.txt", "out.tsv", 50, [SkippedRow(3, "the line is empty")], 2.0)
    assert report.sentences_per_second == 25.0
    assert report.summary() == (
        "wrote 50 rows to out.tsv in 2.00 s (25.0 sentences/s)\n"
        "skipped 1 bad row of in.txt:\n  line 3: the line is empty"
    )
    source = write_input(tmp_path / "in.txt", TEXTS)
    with pytest.raises(InvalidInputError, match="chunk_size must be a positive integer, got 0"):
        predict_file(model, source, tmp_path / "out.tsv", chunk_size=0)
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("sentence\nhello\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1: no 'text' column"):
        predict_file(model, no_text, tmp_path / "out.tsv")
    assert not (tmp_path / "out.tsv").exists()


# ---------------------------------------------------------------------- the user's files


def test_a_utf16_file_is_refused_before_any_output_even_with_skip_bad(
    model: MultiTaskModel, tmp_path: Path
) -> None:
    source = tmp_path / "texts.txt"
    source.write_bytes("".join(f"{text}\n" for text in TEXTS).encode("utf-16"))
    target = tmp_path / "out.tsv"
    with pytest.raises(DataError, match=r"texts\.txt is UTF-16 text .* re-save it as UTF-8"):
        predict_file(model, source, target, skip_bad=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["texts.txt"]


@pytest.mark.parametrize("name", ["in.txt", "in.tsv"])
def test_blank_lines_at_the_end_or_between_rows_are_passed_over(
    model: MultiTaskModel, tmp_path: Path, name: str
) -> None:
    source = write_input(tmp_path / name, TEXTS[:3])
    source.write_text(
        source.read_text(encoding="utf-8").replace("\n", "\n\n", 1) + "\n  \n", encoding="utf-8"
    )
    report = predict_file(model, source, tmp_path / "out.tsv")
    assert report.rows_written == 3 and report.skipped == []
    assert_same_predictions(read_predictions(tmp_path / "out.tsv"), TEXTS[:3], model)


def test_skip_bad_with_every_row_bad_is_an_error_and_keeps_the_earlier_output(
    model: MultiTaskModel, tmp_path: Path
) -> None:
    source = tmp_path / "texts.jsonl"
    source.write_text('{"text": ""}\n{"sentence": "wrong key"}\n', encoding="utf-8")
    target = tmp_path / "out.tsv"
    target.write_text("earlier results\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        predict_file(model, source, target, skip_bad=True)
    assert str(caught.value) == (
        f"every row of {source} is bad (2 rows; line 1: the text is empty), so nothing was written; check "
        "the file's format (--input-format) and encoding"
    )
    assert target.read_text(encoding="utf-8") == "earlier results\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.tsv", "texts.jsonl"]


def test_an_earlier_outputs_permissions_are_kept_and_a_new_one_gets_the_umasks(
    model: MultiTaskModel, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.txt", TEXTS[:2])
    private = tmp_path / "private.tsv"
    private.write_text("earlier\n", encoding="utf-8")
    private.chmod(0o600)
    predict_file(model, source, private)
    predict_file(model, source, tmp_path / "new.tsv")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "new.tsv").stat().st_mode) == 0o666 & ~umask


def test_abandoned_temporaries_of_an_output_are_removed_on_its_next_write(
    model: MultiTaskModel, tmp_path: Path
) -> None:
    """A killed run (SIGKILL, power loss) cannot clean up; the next run to the same output does.

    A temporary some live run still holds (its lock) stays, and so does one made a moment ago.
    """
    source = write_input(tmp_path / "in.txt", TEXTS[:2])
    abandoned, held, young = (
        tmp_path / f".out.tsv.{name}.tmp" for name in ("abandon1", "heldheld", "young123")
    )
    for path in (abandoned, held, young):
        path.write_text("partial", encoding="utf-8")
    for path in (abandoned, held):
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    with held.open("rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        predict_file(model, source, tmp_path / "out.tsv")
    assert not abandoned.exists() and held.exists() and young.exists()


def test_a_failure_when_the_output_is_made_durable_is_one_output_error(
    model: MultiTaskModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_input(tmp_path / "in.txt", TEXTS)
    target = tmp_path / "out.tsv"
    target.write_text("earlier results\n", encoding="utf-8")

    def failing_fsync(descriptor: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(
        SentenceMTLError, match=rf"could not write {target} \(Input/output error\); the earlier"
    ):
        predict_file(model, source, target)
    assert target.read_text(encoding="utf-8") == "earlier results\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.txt", "out.tsv"]


@pytest.fixture
def full_device(tmp_path: Path) -> Path:
    """A character device on which every write fails with ENOSPC: a private /dev/full for root, which
    could replace the real one, and the real one for anyone else."""
    if os.geteuid() != 0:
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full")
        return Path("/dev/full")
    device = tmp_path / "full"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    return device


def test_a_full_device_is_one_output_error_and_stays_a_device(
    model: MultiTaskModel, tmp_path: Path, full_device: Path
) -> None:
    source = write_input(tmp_path / "in.txt", TEXTS)
    with pytest.raises(SentenceMTLError) as caught:
        predict_file(model, source, full_device, chunk_size=2)
    assert str(caught.value) == (
        f"could not write {full_device} (No space left on device); what was written before the failure is "
        "all it received. Make room (disk space, quota, ulimit -f) and run again"
    )
    assert stat.S_ISCHR(full_device.stat().st_mode)


def test_outputs_that_cannot_take_the_file_are_refused_before_any_work(
    encoder: SentenceEncoder, model: MultiTaskModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_input(tmp_path / "in.txt", TEXTS)
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(InvalidInputError, match=rf"embeddings cannot go to /dev/fd/{write_end}, a pipe"):
            encode_file(encoder, source, f"/dev/fd/{write_end}")
    finally:
        os.close(read_end)
        os.close(write_end)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock.tsv"))
        with pytest.raises(
            InvalidInputError, match=r"sock\.tsv is a socket, which cannot be opened as a file"
        ):
            predict_file(model, source, tmp_path / "sock.tsv")
    locked = tmp_path / "locked.tsv"
    locked.write_text("keep me\n", encoding="utf-8")
    locked.chmod(0o444)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode, **kw: mode != os.W_OK and real_access(path, mode, **kw)
    )
    with pytest.raises(SentenceMTLError, match=r"locked\.tsv is read-only; make it writable \(chmod u\+w\)"):
        predict_file(model, source, locked)
    assert locked.read_text(encoding="utf-8") == "keep me\n"
