"""Task 1 script as a subprocess: default run, stdin input, STS scoring and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
