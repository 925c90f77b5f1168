"""Task2/task2.py as a user runs it: untrained heads on the packaged model, a checkpoint, a bad flag."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from sentence_mtl import SentenceEncoder
from sentence_mtl.multitask import MultiTaskModel
from sentence_mtl.tasks import TaskSpec

ROOT = Path(__file__).resolve().parents[1]
UNTRAINED = "Predictions from UNTRAINED heads: their weights are random, so these labels mean nothing."


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "Task2/task2.py", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


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
