"""Data-parallel training: rank shards, loss scaling, and 2 gloo processes under torchrun equal 1 process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ToyData
from safetensors.torch import load_file

from sentence_mtl.errors import InvalidInputError
from sentence_mtl.training import Trainer, TrainingConfig, distributed, load_saved_config, train
from sentence_mtl.training.distributed import DistributedContext

ROOT = Path(__file__).resolve().parents[1]


# 9 topic rows in batches of 4 end with a 1-row batch (rank 1 gets no row).
def uneven_mood(toy: ToyData) -> dict[str, list[str]]:
    """7 mood rows: batches of 4 give 4 + 3 (shards of 2 and 1), the uneven cases of the split."""
    return {**toy.mood, "bad": [*toy.mood["bad"], "cold and rude staff"]}


def no_dropout_copy(tiny_bert_dir: Path, target: Path) -> Path:
    """The tiny BERT with dropout off, so a shard's forward pass is the full batch's, row for row."""
    folder = Path(shutil.copytree(tiny_bert_dir, target))
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------- helpers without a process group


def test_without_torchrun_everything_is_a_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in distributed.ENV_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    context, created = distributed.init_from_env("cpu")
    assert context == DistributedContext() and not created
    assert not context.enabled and context.is_main and distributed.is_main_process()
    assert distributed.all_reduce_max([0, 15], context) == [0, 15]
    assert distributed.broadcast_json({"a": 1}, context) == {"a": 1}
    assert distributed.run_on_main(lambda: 7, context) == 7


def test_a_partial_torchrun_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(InvalidInputError, match=r"MASTER_ADDR.*torchrun"):
        distributed.init_from_env("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(InvalidInputError, match="WORLD_SIZE='two' is not an integer"):
        distributed.init_from_env("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.is_main_process()  # RANK=1 before any group exists: not the printing rank


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shards_are_disjoint_and_cover_the_batch(world_size: int) -> None:
    rows = np.array([7, 3, 9, 1, 4])
    shards = [distributed.shard_rows(rows, rank, world_size) for rank in range(world_size)]
    assert sorted(np.concatenate(shards).tolist()) == sorted(rows.tolist())
    assert sum(len(shard) for shard in shards) == len(rows)


@pytest.mark.parametrize("class_weights", ["none", "balanced"])
def test_loss_factors_make_the_rank_average_the_full_batch_mean(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path, class_weights: str
) -> None:
    """Σ_r factor_r · mean_r / W = the full batch's (weighted) mean, for uneven and empty shards."""
    config = TrainingConfig(
        output_dir=str(tmp_path), model=str(tiny_bert_dir), device="cpu", class_weights=class_weights
    )
    trainer = Trainer(config, [toy.task("mood", uneven_mood(toy))])
    data = trainer.train_data["mood"]
    per_row = torch.rand(len(data), generator=torch.Generator().manual_seed(0))
    weights = trainer.loss.class_weights["mood"]
    row_weight = torch.ones(len(data)) if weights is None else weights[data.labels]

    def weighted_mean(rows: np.ndarray) -> float:
        index = torch.from_numpy(rows)
        return float((per_row[index] * row_weight[index]).sum() / row_weight[index].sum())

    for world_size in (2, 3):
        for rows in (np.array([0, 4, 5]), np.array([6, 1, 2, 3]), np.array([2])):
            average = 0.0
            for rank in range(world_size):
                mine, factor = distributed.shard_batch(rows, data.labels, weights, rank, world_size)
                assert len(mine) >= 1 and (factor == 0.0 or set(mine) <= set(rows))
                average += factor * weighted_mean(mine) / world_size
            assert average == pytest.approx(weighted_mean(rows), rel=1e-6)


def test_a_global_batch_smaller_than_the_world_is_refused(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(distributed, "current_context", lambda: DistributedContext(rank=0, world_size=4))
    config = TrainingConfig(output_dir=str(tmp_path), model=str(tiny_bert_dir), device="cpu", batch_size=2)
    with pytest.raises(
        InvalidInputError, match="global batch, split over 4 processes; it must be at least 4"
    ):
        Trainer(config, [toy.task("mood", uneven_mood(toy))])


# ---------------------------------------------------------------------- two processes, gloo, torchrun


@pytest.fixture
def one_thread():
    """The single-process run on one thread, like each torchrun worker (OMP_NUM_THREADS=1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_two_gloo_processes_under_torchrun_equal_one_process(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path, one_thread: None
) -> None:
    """`torchrun --nproc_per_node=2 Task4/task4.py` gives the weights and metrics of one process."""
    model = no_dropout_copy(tiny_bert_dir, tmp_path / "model")
    topic, mood = (
        toy.write_task(tmp_path / "topic", toy.topic),
        toy.write_task(tmp_path / "mood", uneven_mood(toy)),
    )
    flags = [
        "--model", str(model), "--task", f"topic={topic}", "--task", f"mood={mood}",
        "--dropout", "0", "--batch-size", "4", "--max-steps", "10", "--eval-every", "5", "--log-every", "2",
        "--encoder-lr", "1e-3", "--head-lr", "1e-2", "--warmup-ratio", "0", "--seed", "3",
        "--loss-weighting", "uncertainty", "--class-weights", "balanced", "--device", "cpu",
        "--method", "finetune",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    ddp_dir = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        "Task4/task4.py", *flags, "--output-dir", str(ddp_dir),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("majority baseline") == 2  # dev and test tables, printed by rank 0 only

    ddp = json.loads((ddp_dir / "metrics.json").read_text())
    assert ddp["world_size"] == 2 and ddp["steps"] == 10
    records = [json.loads(line) for line in (ddp_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == [2, 4, 6, 8, 10]  # one writer
    assert [r["step"] for r in records if r["event"] == "eval"] == [5, 10]

    config = load_saved_config(ddp_dir, device="cpu")  # the same flags, as the script resolved them
    config.output_dir = str(tmp_path / "single")
    single = train(config, show_progress=False)
    assert single["world_size"] == 1
    assert ddp["dev"] == single["dev"] and ddp["test"] == single["test"]
    assert len(ddp["history"]) == len(single["history"])
    for ours, theirs in zip(ddp["history"], single["history"], strict=True):
        assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-5)
    assert ddp["task_weights"] == pytest.approx(single["task_weights"], rel=1e-4)
    for part in ("model/model.safetensors", "model/encoder/model.safetensors"):
        ours, theirs = (
            load_file(str(ddp_dir / "last" / part)),
            load_file(str(tmp_path / "single/last" / part)),
        )
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            torch.testing.assert_close(ours[key], value, rtol=1e-4, atol=2e-5, msg=key)


def test_the_contrastive_path_trains_under_torchrun(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path, one_thread: None
) -> None:
    """Few labels under torchrun: each rank pairs the rows of its shard; rank 0 solves and writes."""
    topic = toy.write_task(tmp_path / "topic", toy.topic)
    flags = [
        "--model", str(tiny_bert_dir), "--task", f"topic={topic}", "--batch-size", "6", "--max-steps", "4",
        "--device", "cpu", "--output-dir", str(tmp_path / "ddp"),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}", "Task4/task4.py", *flags,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["method"] == "contrastive" and metrics["world_size"] == 2 and metrics["steps"] == 4
    events = [record["event"] for record in metrics["history"]]
    assert events.count("solve") == events.count("eval") > 0  # the head is solved before each evaluation
