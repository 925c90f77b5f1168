"""Task 3's experiment grid, runner and tables: finished runs are skipped, `--only` selects by name or
tag, seeds aggregate into mean ± std, and records hold repository-relative paths."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import write_task_folder

from sentence_mtl.errors import ModelLoadError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


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


def write(task3: SimpleNamespace, results: Path, name: str, seed: int, record: dict) -> None:
    path = task3.runner.result_path(results, task3.grid.experiment_named(name), seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def render(task3: SimpleNamespace, results: Path, grid=None) -> str:
    return task3.tables.render(task3.tables.load_results(results), task3.grid.GRID if grid is None else grid)


def test_finished_runs_are_skipped(task3: SimpleNamespace, results: Path) -> None:
    write(task3, results, "mtl_plain", 1, fake_record("mtl_plain", 1, 0.95))
    selected = [e for e in task3.grid.GRID if e.name in ("mtl_plain", "zero_shot_names")]
    pending = [(e.name, seed) for e, seed in task3.runner.pending_runs(selected, [0, 1, 2], results)]
    assert pending == [("zero_shot_names", 0), ("mtl_plain", 0), ("mtl_plain", 2)]  # grid order


def test_tables_report_mean_and_sample_std_over_seeds(task3: SimpleNamespace, results: Path) -> None:
    write(task3, results, "mtl_plain", 0, fake_record("mtl_plain", 0, 0.90))
    write(task3, results, "mtl_plain", 1, fake_record("mtl_plain", 1, 0.92))
    write(task3, results, "frozen_linear", 0, fake_record("frozen_linear", 0, 0.88))
    table = render(task3, results)
    test, dev = table.split("Dev (")
    rows = {line.split(" | ")[0].strip("| "): line for line in test.splitlines() if line.startswith("| ")}
    assert "| 2 | 91.0 ± 1.4 | 90.0 ± 1.4 | 70.0 ± 0.0 | 60.0 ± 0.0 | 30.0 ± 0.0 |" in rows["mtl_plain"]
    assert "| 1 | 88.0 | 87.0 |" in rows["frozen_linear"]
    assert test.index("frozen_linear") < test.index("mtl_plain")  # grid order, not file order
    assert "| mtl_plain | 2 | 50.0 ± 0.0 | 40.0 ± 0.0 | 70.0 ± 0.0 | 60.0 ± 0.0 | 30.0 ± 0.0 | 50.0 " in dev
    assert "Hardware: test CPU" in table


def test_forgetting_is_measured_from_the_starting_model(
    task3: SimpleNamespace, tiny_bert_dir: Path, tmp_path: Path, results: Path
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
    Experiment = task3.grid.Experiment
    base = Experiment("base", "both tasks", {**tiny, "max_steps": 8, "eval_every": 4}, tasks)
    forget = Experiment(
        "forget",
        "topic head frozen, sentiment only",
        {**tiny, "freeze": "head:topic", "train_tasks": ["sentiment"], "max_steps": 6, "eval_every": 2},
        tasks,
        start_from=base,
        tags=("forget",),
    )
    paths = task3.runner.Paths(data=tmp_path, results=results, scratch=tmp_path / "scratch")

    # trains the missing starting checkpoint first
    record = task3.runner.run(forget, 0, task3.runner.RunOptions(device="cpu", paths=paths))
    base_record = json.loads(task3.runner.result_path(results, base, 0).read_text())
    assert [entry["step"] for entry in record["history"]] == [0, 2, 4, 6]
    summary = task3.tables.forgetting(record)
    assert summary["topic_start"] == base_record["dev"]["topic"]["accuracy"]
    assert summary["topic_end"] == record["history"][-1]["topic/accuracy"]
    assert summary["topic_drop"] == pytest.approx(summary["topic_start"] - summary["topic_end"])
    assert summary["topic_lowest"] <= min(summary["topic_start"], summary["topic_end"])
    init_from = record["config"]["init_from"]  # the starting checkpoint, as seen from the repository root
    assert not init_from.startswith("/")
    assert (ROOT / init_from).resolve() == (paths.scratch / "base" / "seed0" / "best").resolve()

    task3.runner.save_record(results, forget, 0, record)
    table = render(task3, results, [base, forget])
    forget_rows = [line for line in table.splitlines() if line.startswith("| forget |")]
    assert len(forget_rows) == 1 and "| 1 |" in forget_rows[0]
    assert not any(line.startswith("| forget |") for line in table.split("Scenario 3")[0].splitlines())


def test_forgetting_needs_a_history_that_starts_at_step_zero(task3: SimpleNamespace) -> None:
    record = {"experiment": "x", "seed": 0, "history": [{"event": "eval", "step": 5}]}
    with pytest.raises(ValueError, match="does not start at step 0"):
        task3.tables.forgetting(record)


def test_single_task_twins_keep_the_settings_and_train_one_task_each(task3: SimpleNamespace) -> None:
    grid = task3.grid
    candidate = grid.experiment_named("mtl_balanced")
    topic, sentiment = grid.single_task_twins(candidate)
    assert (topic.name, sentiment.name) == ("mtl_balanced.single_topic", "mtl_balanced.single_sentiment")
    assert topic.tasks == (grid.TOPIC,) and sentiment.tasks == (grid.SENTIMENT,)
    assert topic.overrides == sentiment.overrides == candidate.overrides
    names = [experiment.name for experiment in grid.GRID]
    assert len(names) == len(set(names))
    assert grid.TWINNED == (
        "mtl_balanced",
        "mtl_epochs8",
        "mtl_label_smoothing",
        "mtl_mlp_head",
        "mtl_lr1e-4_ld0.9",
        "mtl_lr1e-4_ld0.9_balanced",
    )
    for name in grid.TWINNED:  # every twinned candidate's twins are in the grid
        assert f"{name}.single_topic" in names and f"{name}.single_sentiment" in names
    twins = names[-2 * len(grid.TWINNED) :]  # after every other experiment, in candidate order
    assert twins == [f"{name}.single_{task}" for name in grid.TWINNED for task in ("topic", "sentiment")]


def test_the_plain_grid_rows_pin_unweighted_cross_entropy(task3: SimpleNamespace) -> None:
    """The package default moved to balanced class weights; the grid's plain rows must not move."""
    for name in ("mtl_plain", "single_topic", "frozen_linear", "forget_frozen_head_lr2e-4", "ladder_k2"):
        assert task3.grid.experiment_named(name).overrides["class_weights"] == "none"
    for name in ("mtl_balanced", "ladder_k2_balanced"):
        assert task3.grid.experiment_named(name).overrides["class_weights"] == "balanced"


def test_tables_say_where_each_experiment_ran(task3: SimpleNamespace, results: Path) -> None:
    write(task3, results, "mtl_plain", 0, fake_record("mtl_plain", 0, 0.90))
    for seed in (0, 1):
        record = fake_record("ladder_k2", seed, 0.9) | {
            "hardware": "NVIDIA H200, torch 2.11.0+cu130",
            "concurrent_runs": 6,
        }
        write(task3, results, "ladder_k2", seed, record)
    test = render(task3, results).split("Dev (")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in test.splitlines() if line.startswith("| ")}
    assert rows["mtl_plain"].endswith("| 10 CPU |")
    assert rows["ladder_k2"].endswith("| 10 NVIDIA H200 ×6 |")


def test_seconds_are_given_per_place_and_never_averaged_across_hardware(task3: SimpleNamespace) -> None:
    cpu = {"hardware": "x86_64 CPU (2 cores, 2 threads), torch 2.13.0+cpu", "wall_seconds": 1000.0}
    gpu = {"hardware": "NVIDIA H200, torch 2.11.0+cu130", "concurrent_runs": 6, "wall_seconds": 50.0}
    assert (
        task3.tables.seconds_per_place([cpu, gpu, gpu | {"wall_seconds": 60.0}])
        == "1000 CPU + 55 NVIDIA H200 ×6"
    )


def test_run_options_fill_in_what_the_experiment_leaves_open(
    task3: SimpleNamespace, tiny_bert_dir: Path, tmp_path: Path, results: Path
) -> None:
    task = write_task_folder(
        tmp_path / "topic",
        {"sport": ["the team won the final", "a great serve"], "money": ["rates rose", "stocks fell"]},
    )
    tasks = (f"topic={task}",)
    experiment = task3.grid.Experiment("tiny", "one task", {"max_steps": 2, "batch_size": 2}, tasks)
    paths = task3.runner.Paths(results=results, scratch=tmp_path / "scratch")
    options = task3.runner.RunOptions(device="cpu", model=str(tiny_bert_dir), concurrent_runs=3, paths=paths)
    record = task3.runner.run(experiment, 0, options)
    config = record["config"]
    assert (ROOT / config["model"]).resolve() == tiny_bert_dir.resolve()
    assert config["amp"] == "fp32"
    assert record["concurrent_runs"] == 3
    assert not (tmp_path / "scratch" / "tiny" / "seed0" / "last").exists()  # only best/ is kept

    # the record names its paths from the repository root, not as this machine's absolute paths
    for path in (config["output_dir"], config["model"], config["tasks"][0].partition("=")[2]):
        assert not path.startswith("/")
    assert (ROOT / config["output_dir"]).resolve() == (tmp_path / "scratch" / "tiny" / "seed0").resolve()
    assert (ROOT / config["tasks"][0].partition("=")[2]).resolve() == Path(task).resolve()
    assert config["init_from"] is None

    own_model = {**experiment.overrides, "model": "nowhere"}
    pinned = task3.grid.Experiment("pinned", "own model", own_model, tasks)
    with pytest.raises(ModelLoadError, match="nowhere"):  # the experiment's own model wins over --model
        task3.runner.run(pinned, 0, options)


def test_a_zero_shot_run_reads_its_tasks_from_the_data_folder(
    task3: SimpleNamespace, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    write_task_folder(
        tmp_path / "data" / "questions",
        {"sport": ["the team won the final", "a great serve"], "money": ["rates rose", "stocks fell"]},
    )
    experiment = task3.grid.Experiment("names", "zero-shot", {"zero_shot": "names"}, ("topic=questions",))
    paths = task3.runner.Paths(data=tmp_path / "data", results=tmp_path / "results")
    options = task3.runner.RunOptions(device="cpu", model=str(tiny_bert_dir), paths=paths)
    record = task3.runner.run(experiment, 0, options)
    assert set(record["test"]["topic"]) == {"accuracy", "macro_f1", "per_class_f1"}
    assert set(record["test"]["topic"]["per_class_f1"]) == {"money", "sport"}
    assert record["baseline"]["dev"]["topic"]["accuracy"] == 0.5  # two classes of two sentences each
    assert record["steps"] == 0 and record["trainable_parameters"] == 0
    assert not record["config"]["model"].startswith("/")


def test_grid_task_folders_are_resolved_against_the_data_folder(
    task3: SimpleNamespace, tmp_path: Path
) -> None:
    arguments = task3.runner.task_arguments((task3.grid.TOPIC, f"other={tmp_path}"), Path("/data"))
    assert arguments == ["topic=/data/trec", f"other={tmp_path}"]  # an absolute folder stays as it is


def test_portable_config_keeps_hub_names_and_relative_paths(task3: SimpleNamespace) -> None:
    config = {
        "output_dir": "/repo/runs/x",
        "init_from": None,
        "model": "BAAI/bge-large-en-v1.5",
        "tasks": ["topic=/shared/data/trec"],
        "seed": 0,
    }
    portable = task3.runner.portable_config(config, Path("/repo"))
    assert portable == {**config, "output_dir": "runs/x", "tasks": ["topic=../shared/data/trec"]}
    assert config["output_dir"] == "/repo/runs/x"  # the input is not changed


def names(task3: SimpleNamespace, *words: str) -> list[str]:
    return [experiment.name for experiment in task3.grid.select(task3.grid.GRID, list(words))]


def test_only_selects_by_exact_name_or_by_tag(task3: SimpleNamespace) -> None:
    grid = task3.grid
    assert names(task3) == [experiment.name for experiment in grid.GRID]  # no --only: everything
    mtl = names(task3, "mtl")
    assert "mtl_plain" in mtl and "mtl_balanced.single_topic" in mtl and "mtl_round_robin" in mtl
    assert "amp_bf16" not in mtl  # needs bf16 hardware: never started by `--only mtl` on a CPU
    assert "single_topic" not in mtl and "ladder_k2" not in mtl
    assert names(task3, "mtl_lr1e-4") == ["mtl_lr1e-4"]  # a prefix of other names selects only itself
    assert names(task3, "frozen") == ["frozen_linear", "frozen_mlp"]
    assert names(task3, "ladder", "frozen_linear")[:3] == ["frozen_linear", "ladder_k0", "ladder_k2"]
    assert len(names(task3, "ladder")) == 8
    assert names(task3, "forget")[:3] == [
        "forget_frozen_head_lr5e-5",
        "forget_trainable_head_lr5e-5",
        "forget_sentiment_only_lr5e-5",
    ]
    transfer = names(task3, "transfer")
    assert transfer[:2] == ["transfer_zero_shot", "transfer_sst_source"] and len(transfer) == 2 + 5 * 4
    single = names(task3, "single")
    assert single[:2] == ["single_topic", "single_sentiment"] and len(single) == 2 + 2 * len(grid.TWINNED)
    assert names(task3, "zero_shot", "frozen_mlp") == [
        "zero_shot_names",
        "zero_shot_descriptions",
        "frozen_mlp",
        "transfer_zero_shot",
    ]
    tags = set(grid.tags_of(grid.GRID))
    assert tags == {"amp", "forget", "frozen", "ladder", "model", "mtl", "single", "transfer", "zero_shot"}
    assert not tags & {experiment.name for experiment in grid.GRID}  # a word is a name or a tag, not both
    with pytest.raises(ValueError, match=r"'mtl_plan': neither an experiment nor a tag \(tags: amp, forget"):
        grid.select(grid.GRID, ["mtl", "mtl_plan"])


def test_every_documented_only_command_names_known_experiments_or_tags(task3: SimpleNamespace) -> None:
    documents = [ROOT / "README.md", ROOT / "Task3" / "README.md", ROOT / "Task3" / "experiments.py"]
    text = "\n".join(path.read_text(encoding="utf-8") for path in documents)
    commands = [match.split() for match in re.findall(r"--only((?:\s+(?!--)[\w.\-]+)+)", text)]
    assert len(commands) >= 8
    for words in commands:
        assert task3.grid.select(task3.grid.GRID, words), words


def run_script(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "Task3" / "experiments.py"), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workers_below_one_are_refused_by_the_script() -> None:
    completed = run_script("--workers", "0", "--only", "none")
    assert completed.returncode == 2
    assert "--workers must be at least 1, got 0" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_an_unknown_only_word_is_refused_by_the_script() -> None:
    completed = run_script("--only", "mtl", "mtl_plan")  # a typo must not run (or skip) anything
    assert completed.returncode == 2
    assert "'mtl_plan': neither an experiment nor a tag" in completed.stderr
    assert "tags: amp, forget, frozen, ladder, model, mtl, single, transfer, zero_shot" in completed.stderr
    assert "Traceback" not in completed.stderr
