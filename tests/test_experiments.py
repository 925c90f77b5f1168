"""Task 3's experiment runner: it skips finished runs and aggregates seeds into mean ± std."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

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
    return {
        "experiment": name,
        "seed": seed,
        "wall_seconds": 10.0,
        "trainable_parameters": 1234,
        "hardware": "test CPU",
        "dev": {"topic": task, "sentiment": sentiment},
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
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "| 2 | 91.0 ± 1.4 | 90.0 ± 1.4 | 70.0 ± 0.0 | 60.0 ± 0.0 | 30.0 ± 0.0 |" in rows["mtl_plain"]
    assert "| 1 | 88.0 | 87.0 |" in rows["frozen_linear"]
    assert table.index("frozen_linear") < table.index("mtl_plain")  # grid order, not file order
    assert "Hardware: test CPU" in table
