"""Task 1 script as a subprocess: default run, stdin input, STS scoring, streaming to .npy, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sentence_mtl import SentenceEncoder

ROOT = Path(__file__).resolve().parents[1]


def run_task1(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "Task1/task1.py", "--device", "cpu", *arguments],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_default_run_prints_summary_similarities_and_neighbours() -> None:
    result = run_task1()
    assert result.returncode == 0, result.stderr[-2000:]
    for expected in (
        "BertModel",
        "pooling         mean",
        "embedding_dim   384",
        "shape (6, 384)",
        "Cosine similarity",
        "Nearest neighbour",
    ):
        assert expected in result.stdout
    # The two guitar sentences are each other's nearest neighbours.
    assert "[0] → [1]" in result.stdout and "[1] → [0]" in result.stdout


def test_stdin_sentences_and_stsb_scoring(tmp_path: Path) -> None:
    sts = tmp_path / "sts.tsv"
    sts.write_text(
        "sentence1\tsentence2\tscore\n"
        "A man plays guitar.\tA man is playing a guitar.\t5.0\n"
        "A dog runs in a park.\tA puppy is running on grass.\t3.8\n"
        "The stock market fell.\tA woman is slicing onions.\t0.0\n"
        "A child reads a book.\tA kid is reading.\t4.2\n",
        encoding="utf-8",
    )
    result = run_task1(
        "--file", "-", "--stsb", str(sts), "--pooling", "max", stdin="first line\nsecond line\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pooling         max" in result.stdout and "shape (2, 384)" in result.stdout
    assert "4 pairs): Spearman ×100 = " in result.stdout


def test_bad_input_gives_one_line_errors(tmp_path: Path) -> None:
    missing = run_task1("--stsb", str(tmp_path / "nope.tsv"))
    assert (
        missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )
    bad_model = run_task1("--model", str(tmp_path))
    assert bad_model.returncode == 2 and "not a model folder" in bad_model.stderr
    bad_batch = run_task1("--batch-size", "0")
    assert bad_batch.returncode == 2 and "batch_size" in bad_batch.stderr


@pytest.mark.parametrize("runtime", [[], ["--backend", "onnx"]], ids=["torch", "onnx"])
def test_output_streams_a_files_rows_to_npy_without_printing_vectors(
    tiny_bert_dir: Path, tmp_path: Path, runtime: list[str]
) -> None:
    if runtime:
        pytest.importorskip("onnxruntime")
    texts = ["A man plays guitar.", "Stocks, bonds and gold fell.", "It rained all weekend."]
    source = tmp_path / "texts.csv"
    source.write_text("id,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts)), encoding="utf-8")
    vectors = tmp_path / "vectors.npy"
    result = run_task1(
        "--model", str(tiny_bert_dir), "--file", str(source), "--output", str(vectors), *runtime
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"wrote 3 rows to {vectors} in ") and "sentences/s)" in result.stdout
    assert "Model" not in result.stdout and "Embeddings" not in result.stdout
    expected = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu").encode(texts)
    np.testing.assert_allclose(np.load(vectors, mmap_mode="r"), expected, atol=1e-5)


def test_stdin_to_npy_names_bad_rows_and_skips_them_on_request(tiny_bert_dir: Path, tmp_path: Path) -> None:
    vectors = tmp_path / "vectors.npy"
    arguments = ["--model", str(tiny_bert_dir), "--file", "-", "--output", str(vectors)]
    stdin = "first\n\nsec\x00ond\nthird\n"  # a blank line is no row; a NUL byte makes a bad one
    stopped = run_task1(*arguments, stdin=stdin)
    assert stopped.returncode == 2 and not vectors.exists()
    assert "error: <stdin>, line 3: a NUL byte (\\x00), which text never holds" in stopped.stderr

    result = run_task1(*arguments, "--skip-bad", "--chunk-size", "1", stdin=stdin)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipped 1 bad row of <stdin>:\n  line 3: a NUL byte" in result.stdout
    assert np.load(vectors).shape == (2, 32)


def test_output_needs_a_file_and_file_flags_need_output() -> None:
    no_file = run_task1("--output", "vectors.npy")
    assert no_file.returncode == 2 and "--output writes the vectors of --file's rows" in no_file.stderr
    stray = run_task1("--skip-bad", "--sentences", "hi")
    assert stray.returncode == 2
    assert stray.stderr.splitlines() == [
        "error: without --file there is no file to read, so --skip-bad would do nothing; add --file FILE or "
        "drop --skip-bad"
    ]
    chunks = run_task1("--file", "-", "--chunk-size", "8", stdin="hi\n")
    assert chunks.returncode == 2
    assert chunks.stderr.splitlines() == [
        "error: without --output there is no file to stream, so --chunk-size would do nothing; add "
        "--output VECTORS.npy or drop --chunk-size"
    ]
