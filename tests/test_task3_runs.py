"""Task 3's runner at work: continuing runs wait for the same seed of their start, a failed run is
reported without ending the others, every run records its peak memory and STS-B drift, and a
learning-curve subset is stratified per seed."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT, write_task_folder

from sentence_mtl.data.task_folders import load_task_folder


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


def write_sts_dev(data: Path) -> None:
    pairs = [
        ("the team won the final", "the team won the cup", 4.5),
        ("the bank raised rates", "rates went up at the bank", 4.0),
        ("i hated every minute", "a wonderful delightful day", 0.5),
        ("stocks fell sharply today", "the striker scored a goal", 0.0),
        ("a great tennis serve", "a fine serve at tennis", 4.2),
    ]
    (data / "stsb").mkdir(parents=True)
    rows = ["sentence1\tsentence2\tscore"] + [f"{a}\t{b}\t{score}" for a, b, score in pairs]
    (data / "stsb" / "dev.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def two_task_folders(tmp_path: Path) -> tuple[str, str]:
    words = {
        "sport": ["goal", "match", "serve", "team", "final", "coach"],
        "money": ["bank", "stock", "rate", "profit", "loan", "price"],
    }
    topic = write_task_folder(
        tmp_path / "topic",
        {label: [f"a {w} and {v}" for w in ws for v in ws[:3]] for label, ws in words.items()},
    )
    moods = {"bad": ["awful", "boring", "dull"], "good": ["lovely", "great", "fine"]}
    sentiment = write_task_folder(
        tmp_path / "sentiment",
        {label: [f"it was {w} {v}" for w in ws for v in ws] for label, ws in moods.items()},
    )
    return topic, sentiment


def test_continuing_runs_wait_for_the_same_seed_of_their_start_and_record_memory_and_drift(
    task3: SimpleNamespace, tiny_bert_dir: Path, tmp_path: Path, results: Path
) -> None:
    topic, sentiment = two_task_folders(tmp_path)
    write_sts_dev(tmp_path / "data")
    tiny = {"model": str(tiny_bert_dir), "batch_size": 4, "warmup_ratio": 0.0, "encoder_lr": 1e-3}
    tasks = (f"topic={topic}", f"sentiment={sentiment}")
    Experiment = task3.grid.Experiment
    base = Experiment("base", "both tasks", {**tiny, "max_steps": 4, "eval_every": 2}, tasks)
    frozen = Experiment("frozen", "heads solved", {**tiny, "freeze": "encoder"}, tasks)
    later = Experiment(
        "later", "continues base", {**tiny, "max_steps": 2, "eval_every": 2}, tasks, start_from=base
    )
    paths = task3.runner.Paths(data=tmp_path / "data", results=results, scratch=tmp_path / "scratch")
    options = task3.runner.RunOptions(device="cpu", paths=paths, concurrent_runs=2)

    # the start is not asked for: it is added, and trained before what continues it
    assert task3.runner.with_starting_runs([(later, 1), (frozen, 1)], paths) == [
        (base, 1),
        (later, 1),
        (frozen, 1),
    ]
    assert task3.runner.run_in_parallel([(later, 1), (frozen, 1)], options, workers=2) == []

    records = {
        name: json.loads((results / name / "seed1.json").read_text()) for name in ("base", "later", "frozen")
    }
    assert (ROOT / records["later"]["config"]["init_from"]).resolve() == (
        paths.scratch / "base" / "seed1" / "best"
    ).resolve()
    assert records["later"]["history"][0]["topic/accuracy"] == records["base"]["dev"]["topic"]["accuracy"]
    for record in records.values():
        assert record["peak_memory"]["rss_mib"] > 50  # the process's own peak: torch alone is more
    assert isinstance(records["base"]["stsb_dev_spearman"], float)
    assert records["frozen"]["stsb_dev_spearman"] is None  # a frozen encoder did not move


def test_a_failed_run_is_reported_and_its_continuations_are_not_started(
    task3: SimpleNamespace, tiny_bert_dir: Path, tmp_path: Path, results: Path
) -> None:
    Experiment = task3.grid.Experiment
    broken = Experiment(
        "broken", "no such folder", {"model": str(tiny_bert_dir)}, (f"topic={tmp_path / 'none'}",)
    )
    later = Experiment(
        "later", "continues broken", {"model": str(tiny_bert_dir)}, broken.tasks, start_from=broken
    )
    paths = task3.runner.Paths(data=tmp_path, results=results, scratch=tmp_path / "scratch")
    failures = task3.runner.run_in_parallel(
        [(later, 0)], task3.runner.RunOptions(device="cpu", paths=paths), 1
    )
    assert len(failures) == 2 and failures[0].startswith("broken seed 0: DataError")
    assert failures[1] == "later seed 0: its starting run failed"
    assert not results.exists()


def test_a_training_subset_is_stratified_drawn_per_seed_and_keeps_dev_and_test(
    task3: SimpleNamespace, tmp_path: Path
) -> None:
    topic, _ = two_task_folders(tmp_path)
    scratch = tmp_path / "scratch"

    full = load_task_folder("topic", topic)
    first = task3.measures.subset_folder("topic", Path(topic), 6, 0, scratch)
    again = task3.measures.subset_folder("topic", Path(topic), 6, 0, scratch)
    other = task3.measures.subset_folder("topic", Path(topic), 6, 1, scratch)
    assert first == again
    small = load_task_folder("topic", first)
    assert len(small.train) == 6 and sorted(small.train.labels) == [0, 0, 0, 1, 1, 1]
    assert set(small.train.texts) <= set(full.train.texts)
    assert small.dev.texts == full.dev.texts and small.test.texts == full.test.texts
    assert load_task_folder("topic", other).train.texts != small.train.texts
    with pytest.raises(ValueError, match="needs 0 < rows"):
        task3.measures.subset_folder("topic", Path(topic), len(full.train), 2, scratch)
