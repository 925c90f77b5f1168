"""Task 3's experiment runner: it skips finished runs and aggregates seeds into mean ± std."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from sentence_mtl.errors import ModelLoadError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def experiments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("task3_experiments", ROOT / "Task3" / "experiments.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    return module


def fake_record(name: str, seed: int, topic_accuracy: float) -> dict:
    task = {"accuracy": topic_accuracy, "macro_f1": topic_accuracy - 0.01, "per_class_f1": {}}
    sentiment = {"accuracy": 0.7, "macro_f1": 0.6, "per_class_f1": {"neutral": 0.3}}
    dev_task = {"accuracy": 0.5, "macro_f1": 0.4, "per_class_f1": {}}
    return {
        "experiment": name,
        "seed": seed,
        "wall_seconds": 10.0,
        "trainable_parameters": 1234,
        "hardware": "test CPU",
        "dev": {"topic": dev_task, "sentiment": sentiment},
        "test": {"topic": task, "sentiment": sentiment},
    }


def write(experiments: ModuleType, name: str, seed: int, accuracy: float) -> None:
    experiment = next(e for e in experiments.GRID if e.name == name)
    path = experiments.result_path(experiment, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fake_record(name, seed, accuracy)))


def test_finished_runs_are_skipped(experiments: ModuleType) -> None:
    write(experiments, "mtl_plain", 1, 0.95)
    selected = [e for e in experiments.GRID if e.name in ("mtl_plain", "zero_shot_names")]
    pending = [(e.name, seed) for e, seed in experiments.pending_runs(selected, [0, 1, 2])]
    assert pending == [("zero_shot_names", 0), ("mtl_plain", 0), ("mtl_plain", 2)]  # grid order


def test_tables_report_mean_and_sample_std_over_seeds(experiments: ModuleType) -> None:
    write(experiments, "mtl_plain", 0, 0.90)
    write(experiments, "mtl_plain", 1, 0.92)
    write(experiments, "frozen_linear", 0, 0.88)
    table = experiments.tables(experiments.load_results())
    test, dev = table.split("Dev (")
    rows = {line.split(" | ")[0].strip("| "): line for line in test.splitlines() if line.startswith("| ")}
    assert "| 2 | 91.0 ± 1.4 | 90.0 ± 1.4 | 70.0 ± 0.0 | 60.0 ± 0.0 | 30.0 ± 0.0 |" in rows["mtl_plain"]
    assert "| 1 | 88.0 | 87.0 |" in rows["frozen_linear"]
    assert test.index("frozen_linear") < test.index("mtl_plain")  # grid order, not file order
    assert "| mtl_plain | 2 | 50.0 ± 0.0 | 40.0 ± 0.0 | 70.0 ± 0.0 | 60.0 ± 0.0 | 30.0 ± 0.0 | 50.0 " in dev
    assert "Hardware: test CPU" in table


def write_task_folder(folder: Path, rows: dict[str, list[str]]) -> str:
    folder.mkdir(parents=True)
    lines = ["text\tlabel"] + [f"{text}\t{label}" for label, texts in rows.items() for text in texts]
    for split in ("train", "dev", "test"):
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(folder)


def test_forgetting_is_measured_from_the_starting_model(
    experiments: ModuleType, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = write_task_folder(
        tmp_path / "topic",
        {
            "sport": ["the striker scored a goal", "the team won the final", "a great tennis serve"],
            "money": ["the bank raised rates", "stocks fell sharply today", "the firm reported profit"],
        },
    )
    sentiment = write_task_folder(
        tmp_path / "sentiment",
        {
            "bad": ["i hated every minute", "a terrible awful film", "worst day ever"],
            "good": ["i loved it so much", "a wonderful delightful day", "best meal of my life"],
        },
    )
    tiny = {
        "model": str(tiny_bert_dir),
        "batch_size": 4,
        "encoder_lr": 1e-3,
        "head_lr": 1e-2,
        "warmup_ratio": 0.0,
    }
    tasks = (f"topic={topic}", f"sentiment={sentiment}")
    base = experiments.Experiment("base", "both tasks", {**tiny, "max_steps": 8, "eval_every": 4}, tasks)
    forget = experiments.Experiment(
        "forget",
        "topic head frozen, sentiment only",
        {**tiny, "freeze": "head:topic", "train_tasks": ["sentiment"], "max_steps": 6, "eval_every": 2},
        tasks,
        start_from="base",
    )
    monkeypatch.setattr(experiments, "GRID", [base, forget])
    monkeypatch.setattr(experiments, "SCRATCH", tmp_path / "scratch")

    # trains the missing starting checkpoint first
    record = experiments.run(forget, 0, experiments.RunOptions(device="cpu"))
    base_record = json.loads(experiments.result_path(base, 0).read_text())
    assert [entry["step"] for entry in record["history"]] == [0, 2, 4, 6]
    summary = experiments.forgetting(record)
    assert summary["topic_start"] == base_record["dev"]["topic"]["accuracy"]
    assert summary["topic_end"] == record["history"][-1]["topic/accuracy"]
    assert summary["topic_drop"] == pytest.approx(summary["topic_start"] - summary["topic_end"])
    assert summary["topic_lowest"] <= min(summary["topic_start"], summary["topic_end"])

    experiments.save_record(forget, 0, record)
    table = experiments.tables(experiments.load_results())
    forget_rows = [line for line in table.splitlines() if line.startswith("| forget |")]
    assert len(forget_rows) == 1 and "| 1 |" in forget_rows[0]
    assert not any(line.startswith("| forget |") for line in table.split("Scenario 3")[0].splitlines())


def test_forgetting_needs_a_history_that_starts_at_step_zero(experiments: ModuleType) -> None:
    record = {"experiment": "x", "seed": 0, "history": [{"event": "eval", "step": 5}]}
    with pytest.raises(ValueError, match="does not start at step 0"):
        experiments.forgetting(record)


def test_single_task_twins_keep_the_settings_and_train_one_task_each(experiments: ModuleType) -> None:
    candidate = experiments.experiment_named("mtl_balanced")
    topic, sentiment = experiments.single_task_twins(candidate)
    assert (topic.name, sentiment.name) == ("mtl_balanced.single_topic", "mtl_balanced.single_sentiment")
    assert topic.tasks == (experiments.TOPIC,) and sentiment.tasks == (experiments.SENTIMENT,)
    assert topic.overrides == sentiment.overrides == candidate.overrides
    names = [experiment.name for experiment in experiments.GRID]
    assert len(names) == len(set(names))
    for name in experiments.TWINNED:  # every twinned candidate's twins are in the grid
        assert f"{name}.single_topic" in names and f"{name}.single_sentiment" in names


def test_the_plain_grid_rows_pin_unweighted_cross_entropy(experiments: ModuleType) -> None:
    """The package default moved to balanced class weights; the grid's plain rows must not move."""
    for name in ("mtl_plain", "single_topic", "frozen_linear", "forget_high_lr", "top2"):
        assert experiments.experiment_named(name).overrides["class_weights"] == "none"
    assert experiments.experiment_named("mtl_balanced").overrides["class_weights"] == "balanced"


def test_tables_say_where_each_experiment_ran(experiments: ModuleType) -> None:
    write(experiments, "mtl_plain", 0, 0.90)
    for seed in (0, 1):
        record = fake_record("top2", seed, 0.9) | {
            "hardware": "NVIDIA H200, torch 2.11.0+cu130",
            "concurrent_runs": 6,
        }
        path = experiments.result_path(experiments.experiment_named("top2"), seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    test = experiments.tables(experiments.load_results()).split("Dev (")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in test.splitlines() if line.startswith("| ")}
    assert rows["mtl_plain"].endswith("| CPU |")
    assert rows["top2"].endswith("| NVIDIA H200 ×6 |")


def test_run_options_fill_in_what_the_experiment_leaves_open(
    experiments: ModuleType, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = write_task_folder(
        tmp_path / "topic",
        {"sport": ["the team won the final", "a great serve"], "money": ["rates rose", "stocks fell"]},
    )
    tasks = (f"topic={task}",)
    experiment = experiments.Experiment("tiny", "one task", {"max_steps": 2, "batch_size": 2}, tasks)
    monkeypatch.setattr(experiments, "SCRATCH", tmp_path / "scratch")
    options = experiments.RunOptions(device="cpu", model=str(tiny_bert_dir), concurrent_runs=3)
    record = experiments.run(experiment, 0, options)
    assert record["config"]["model"] == str(tiny_bert_dir)
    assert record["config"]["amp"] == "fp32"
    assert record["concurrent_runs"] == 3
    assert not (tmp_path / "scratch" / "tiny" / "seed0" / "last").exists()  # only best/ is kept

    own_model = {**experiment.overrides, "model": "nowhere"}
    pinned = experiments.Experiment("pinned", "own model", own_model, tasks)
    with pytest.raises(ModelLoadError, match="nowhere"):  # the experiment's own model wins over --model
        experiments.run(pinned, 0, options)


def test_workers_below_one_are_refused_by_the_script() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "Task3" / "experiments.py"), "--workers", "0", "--only", "none"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert "--workers must be at least 1, got 0" in completed.stderr
    assert "Traceback" not in completed.stderr
