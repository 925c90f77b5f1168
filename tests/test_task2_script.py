"""Task2/task2.py as a user runs it: untrained heads, a checkpoint, file prediction, bad flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sentence_mtl import SentenceEncoder
from sentence_mtl.model.multitask import MultiTaskModel
from sentence_mtl.model.tasks import TaskSpec

ROOT = Path(__file__).resolve().parents[1]
UNTRAINED = "Predictions from UNTRAINED heads: their weights are random, so these labels mean nothing."


def run_script(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "Task2/task2.py", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def saved_model(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MultiTaskModel]:
    """A tiny two-task model saved as Task 4 saves one, and the model itself to compare with."""
    torch.manual_seed(3)
    tasks = [TaskSpec("topic", ["sports", "finance"]), TaskSpec("mood", ["sad", "calm", "glad"])]
    model = MultiTaskModel(SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu"), tasks, head="mlp")
    folder = tmp_path_factory.mktemp("task2") / "best"
    model.save(folder)
    return folder, model


def test_default_run_shows_architecture_shapes_and_labels_untrained_predictions() -> None:
    result = run_script("--device", "cpu")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "MultiTaskModel: linear heads on sentence-transformers/all-MiniLM-L6-v2 (cpu)" in out
    assert "├─ backbone    BertModel, 6 layers, hidden 384" in out
    assert "└─ embedding   384 dims, shared by every head" in out
    assert "topic      Dropout(0.1) → Linear(384 → 6)  → 6 logits: business, food, health, sports," in out
    assert "heads['sentiment'] → logits (4, 3)" in out and "heads['topic'] → logits (4, 6)" in out
    assert "shared encoder                  22,713,216           0" in out
    assert UNTRAINED in out
    assert "Loading weights" not in result.stderr


def test_checkpoint_run_prints_the_saved_models_predictions(tiny_bert_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(3)
    tasks = [TaskSpec("topic", ["sports", "finance"]), TaskSpec("mood", ["sad", "calm", "glad"])]
    model = MultiTaskModel(SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu"), tasks, head="mlp")
    model.save(tmp_path / "best")
    sentence = "The final whistle blew."
    expected = model.predict([sentence])[0]

    result = run_script("--checkpoint", str(tmp_path / "best"), "--sentences", sentence, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "UNTRAINED" not in result.stdout
    assert f"Predictions (trained heads from {tmp_path / 'best'})" in result.stdout
    line = "   ".join(f"{task}: {p['label']} ({p['probability']:.2f})" for task, p in expected.items())
    assert f"  {sentence}\n    {line}\n" in result.stdout


def test_bad_tasks_syntax_exits_2_with_a_one_line_error() -> None:
    result = run_script("--tasks", "topic=a,b", "sentiment")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: --tasks 'sentiment' is not NAME=LABEL,LABEL,... (as in sentiment=negative,neutral,positive)"
    ]
    assert result.stdout == ""


@pytest.mark.parametrize("runtime", [[], ["--backend", "onnx"]], ids=["torch", "onnx"])
def test_stdin_to_stdout_writes_tsv_predictions_and_the_summary_to_stderr(
    saved_model: tuple[Path, MultiTaskModel], runtime: list[str]
) -> None:
    if runtime:
        pytest.importorskip("onnxruntime")
    folder, model = saved_model
    texts = ["The final whistle blew.", "Markets, again, fell."]
    result = run_script(
        "--checkpoint",
        str(folder),
        "--input",
        "-",
        "--output",
        "-",
        "--device",
        "cpu",
        *runtime,
        stdin="\n".join(texts),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "text\ttopic\ttopic_probability\tmood\tmood_probability"
    for line, text, expected in zip(lines[1:], texts, model.predict(texts), strict=True):
        fields = line.split("\t")
        assert (
            fields[0] == text
            and fields[1] == expected["topic"]["label"]
            and fields[3] == expected["mood"]["label"]
        )
        assert float(fields[2]) == pytest.approx(expected["topic"]["probability"], abs=1e-5)
    assert len(lines) == 3 and "MultiTaskModel:" not in result.stdout
    assert "wrote 2 rows to <stdout> in " in result.stderr and "sentences/s)" in result.stderr


def test_file_mode_skips_and_lists_bad_rows(saved_model: tuple[Path, MultiTaskModel], tmp_path: Path) -> None:
    folder, model = saved_model
    source = tmp_path / "texts.tsv"
    source.write_bytes(b"id\ttext\n1\tA goal!\n2\t \n3\tbad \xff byte\n4\tRates rose.\n")
    output = tmp_path / "out.jsonl"
    arguments = [
        "--checkpoint",
        str(folder),
        "--input",
        str(source),
        "--output",
        str(output),
        "--device",
        "cpu",
    ]

    stopped = run_script(*arguments)
    assert stopped.returncode == 2 and not output.exists()
    assert stopped.stderr.splitlines() == [
        f"error: {source}, line 3: the text is empty; fix the row or pass --skip-bad (skip_bad=True) to "
        "leave it out"
    ]

    result = run_script(*arguments, "--skip-bad", "--distribution", "--chunk-size", "1", "--batch-size", "1")
    assert result.returncode == 0, result.stderr
    assert f"wrote 2 rows to {output} in " in result.stdout
    assert (
        f"skipped 2 bad rows of {source}:\n  line 3: the text is empty\n  line 4: bytes that are not UTF-8"
        in (result.stdout)
    )
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    expected = model.predict(["A goal!", "Rates rose."], return_distribution=True)
    assert [row["text"] for row in rows] == ["A goal!", "Rates rose."]
    assert [row["mood"]["label"] for row in rows] == [prediction["mood"]["label"] for prediction in expected]
    assert list(rows[0]["mood"]["distribution"]) == ["sad", "calm", "glad"]


def test_file_flags_are_refused_without_a_checkpoint_or_their_partner(tmp_path: Path) -> None:
    no_checkpoint = run_script("--input", "-", "--output", "-")
    assert no_checkpoint.returncode == 2 and no_checkpoint.stdout == ""
    assert no_checkpoint.stderr.splitlines() == [
        "error: --input needs --checkpoint: untrained heads would label the file at random; pass a folder "
        "saved by Task 4, such as OUTPUT_DIR/best"
    ]
    stray = run_script("--distribution", "--chunk-size", "10")
    assert stray.returncode == 2
    assert stray.stderr.splitlines() == [
        "error: without --input and --output there is no file to classify, so --distribution, --chunk-size "
        "would do nothing; add --input FILE --output FILE or drop --distribution, --chunk-size"
    ]
    alone = run_script("--input", "texts.txt", "--checkpoint", str(tmp_path))
    assert alone.returncode == 2
    assert alone.stderr.splitlines() == [
        "error: --input and --output go together; pass both (a file path or - for each)"
    ]
