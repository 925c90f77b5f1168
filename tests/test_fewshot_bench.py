"""bench/fewshot.py: the sampler every method shares, skipping finished runs, and the tables' arithmetic."""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fewshot() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return runpy.run_path(str(ROOT / "bench" / "fewshot.py"), run_name="fewshot")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_the_sample_has_n_rows_of_each_class_and_follows_its_seed(fewshot: dict[str, Any]) -> None:
    labels = [0] * 30 + [1] * 20 + [2] * 10
    rows = fewshot["sample_rows"](labels, 3, 8, seed=4)
    assert len(set(rows.tolist())) == 24
    assert np.bincount(np.asarray(labels)[rows]).tolist() == [8, 8, 8]
    assert rows.tolist() == fewshot["sample_rows"](labels, 3, 8, seed=4).tolist()
    assert rows.tolist() != fewshot["sample_rows"](labels, 3, 8, seed=5).tolist()


def write_set(data: Path) -> None:
    (data / "toy").mkdir(parents=True)
    rows = [f"text {i}\t{'ab'[i % 2]}" for i in range(40)]
    for split in ("train", "test"):
        (data / "toy" / f"{split}.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")


def test_finished_runs_are_skipped_and_the_table_compares_with_setfit(
    fewshot: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_set(tmp_path / "data")
    calls: list[tuple[str, int]] = []
    scores = {"setfit": [0.60, 0.62, 0.64], "defaults": [0.70, 0.73, 0.74]}

    def fake_run(method: str, folder: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
        calls.append((method, seed))
        assert (folder / "train.tsv").read_text().count("\n") == 1 + 2 * 4  # header + 4 per class
        value = scores[method][seed]
        return {"test": {"accuracy": value, "macro_f1": value}, "seconds": 1.0}

    run_all, table = fewshot["run_all"], fewshot["table"]
    monkeypatch.setitem(run_all.__globals__, "run_method", fake_run)  # the script's own globals
    monkeypatch.setitem(run_all.__globals__, "SETS", ("toy",))
    args = argparse.Namespace(
        sizes=[4], seeds=[0, 1, 2], sets=["toy"], methods=["setfit", "defaults"], data=tmp_path / "data",
        work=tmp_path / "work", setfit_python="python",
    )  # fmt: skip
    run_all(args)
    run_all(args)
    assert len(calls) == 6  # the second pass found every result
    record = json.loads((tmp_path / "work" / "toy" / "n4" / "defaults" / "seed1.json").read_text())
    assert record["test"]["accuracy"] == 0.73 and record["method"] == "defaults"
    text = table(tmp_path / "work")
    assert "| toy | 62.0 ± 2.0 / 62.0 ± 2.0 (3) | 72.3 ± 2.1 / 72.3 ± 2.1 (3) |" in text
    assert "+10.3 [+5.7, +15.0]" in text  # Welch: the two groups' spreads, 3.57 degrees of freedom
    # Paired by seed: differences 10, 11, 10; t(0.975, 2) · 0.577 / √3 = 4.303 · 0.333 = 1.43.
    paired = "+10.3; paired by seed +10.3 [+8.9, +11.8]"
    assert f"| mean over the sets | 62.0 / 62.0 | 72.3 / 72.3 | 1.0, 1.0 | {paired} | {paired} |" in text


def test_transfer_runs_name_their_source_and_are_paired_with_defaults_and_setfit(
    fewshot: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_set(tmp_path / "data")
    scores = {
        "setfit": [0.60, 0.62, 0.64],
        "defaults": [0.70, 0.73, 0.74],
        "transfer": [0.80, 0.81, 0.83],
        "source": [0.50, 0.50, 0.50],
    }

    def fake_run(method: str, folder: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
        value = scores[method][seed]
        return {"test": {"accuracy": value, "macro_f1": value}, "seconds": 1.0}

    run_all, table = fewshot["run_all"], fewshot["table"]
    monkeypatch.setitem(run_all.__globals__, "run_method", fake_run)
    monkeypatch.setitem(run_all.__globals__, "SETS", ("toy",))
    args = argparse.Namespace(
        sizes=[4], seeds=[0, 1, 2], sets=["toy"], methods=list(scores), data=tmp_path / "data",
        work=tmp_path / "work", setfit_python="python", init_from=tmp_path / "source" / "best",
    )  # fmt: skip
    run_all(args)
    transfer = json.loads((tmp_path / "work" / "toy" / "n4" / "transfer" / "seed0.json").read_text())
    defaults = json.loads((tmp_path / "work" / "toy" / "n4" / "defaults" / "seed0.json").read_text())
    assert transfer["init_from"] == str(tmp_path / "source" / "best") and "init_from" not in defaults
    main_table, transfer_table = table(tmp_path / "work").split("transfer from a related task's model")
    assert "transfer" not in main_table.split("**N = 4 per class**")[1]  # the main table keeps its columns
    assert "| toy | 50.0 ± 0.0 / 50.0 ± 0.0 (3) | – / – | 81.3 ± 1.5 / 81.3 ± 1.5 (3) |" in transfer_table
    # Paired by seed, transfer − source: 30, 31, 33, so 31.3 ± t(0.975, 2) · 1.53 / √3 = 31.3 ± 3.79.
    # Transfer − defaults: 10, 8, 9, so 9 ± 4.303 · 1 / √3 = 9 ± 2.48.
    # Transfer − SetFit: 20, 19, 19, so 19.3 ± 4.303 · 0.577 / √3 = 19.3 ± 1.43.
    intervals = ("+31.3 [+27.5, +35.1]", "+9.0 [+6.5, +11.5]", "+19.3 [+17.9, +20.8]")
    assert " | ".join(interval for interval in intervals for _ in range(2)) + " |" in transfer_table


def test_finetune_and_pairs_only_are_columns_only_where_they_ran_and_are_paired_with_the_defaults(
    fewshot: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_set(tmp_path / "data")
    scores = {
        "setfit": [0.60, 0.62, 0.64],
        "defaults": [0.70, 0.73, 0.74],
        "finetune": [0.50, 0.55, 0.53],
        "pairs_only": [0.65, 0.69, 0.70],
    }

    def fake_run(method: str, folder: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
        value = scores[method][seed]
        return {"test": {"accuracy": value, "macro_f1": value}, "seconds": 1.0}

    run_all, table = fewshot["run_all"], fewshot["table"]
    monkeypatch.setitem(run_all.__globals__, "run_method", fake_run)
    monkeypatch.setitem(run_all.__globals__, "SETS", ("toy",))
    for sizes, methods in (([4], list(scores)), ([2], ["setfit", "defaults"])):
        args = argparse.Namespace(
            sizes=sizes, seeds=[0, 1, 2], sets=["toy"], methods=methods, data=tmp_path / "data",
            work=tmp_path / "work", setfit_python="python",
        )  # fmt: skip
        run_all(args)
    small, large = table(tmp_path / "work").split("**N = 4 per class**")
    assert "finetune" not in small  # no finetune runs at N = 2: no empty column, and a mean row
    assert "| mean over the sets | 62.0 / 62.0 | 72.3 / 72.3 | 1.0, 1.0 |" in small
    finetune = "52.7 ± 2.5 / 52.7 ± 2.5 (3)"
    assert f"| toy | 62.0 ± 2.0 / 62.0 ± 2.0 (3) | 72.3 ± 2.1 / 72.3 ± 2.1 (3) | {finetune} |" in large
    # Paired by seed, defaults − finetune: 20, 18, 21, so 19.7 ± t(0.975, 2) · 1.53 / √3 = 19.7 ± 3.79.
    expected = "paired by seed (3 seeds): accuracy +19.7 [+15.9, +23.5]; macro-F1 +19.7 [+15.9, +23.5]."
    assert expected in large
    # Defaults − pairs_only: 5, 4, 4, so 4.3 ± 4.303 · 0.577 / √3 = 4.3 ± 1.43; no SetFit-with-names line.
    assert (
        "Defaults − pairs_only, mean over the sets, paired by seed (3 seeds): accuracy +4.3 [+2.9, +5.8]"
        in large
    )
    assert "setfit_names" not in large


def test_a_method_that_has_not_run_every_set_has_no_mean_and_the_others_keep_theirs(
    fewshot: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    size_table = fewshot["size_table"]
    monkeypatch.setitem(size_table.__globals__, "SETS", ("toy", "other"))

    def record(name: str, method: str, seed: int, value: float) -> dict[str, Any]:
        test = {"accuracy": value, "macro_f1": value}
        return {"set": name, "per_class": 4, "method": method, "seed": seed, "test": test, "seconds": 2.0}

    records = [record(n, "setfit", seed, 0.60) for n in ("toy", "other") for seed in (0, 1)]
    records += [record(n, "defaults", seed, 0.70 + seed / 100) for n in ("toy", "other") for seed in (0, 1)]
    records += [record("toy", "setfit_names", 0, 0.65)]  # one set only, so far
    mean = next(line for line in size_table(records, 4) if line.startswith("| mean over the sets"))
    assert mean.startswith("| mean over the sets | 60.0 / 60.0 | 70.5 / 70.5 | – | 2.0, 2.0, – | +10.5;")
