"""The training loop on a tiny model: it learns, freezes, caches, resumes and fails safely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ScriptRunner, ToyData, stop_after_step, tiny_config
from safetensors.torch import load_file

from sentence_mtl import MultiTaskModel, SentenceEncoder, TaskSpec
from sentence_mtl.errors import InvalidInputError, TrainingDivergedError, TrainingInterrupted
from sentence_mtl.training import Trainer, TrainingConfig, load_saved_config, train
from sentence_mtl.training.optimization import balanced_class_weights, linear_schedule

ROOT = Path(__file__).resolve().parents[1]


def head_weights(output_dir: Path, folder: str = "best") -> dict[str, torch.Tensor]:
    return load_file(str(output_dir / folder / "model.safetensors"))


def test_the_loop_overfits_a_tiny_dataset(toy: ToyData, tiny_bert_dir: Path, tmp_path: Path) -> None:
    # Mean pooling without normalisation: a random tiny BERT's normalised CLS vectors are nearly
    # parallel, which would make this a test of the random init rather than of the loop.
    tasks = toy.tasks()
    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, pooling="mean", normalize=False, device="cpu")
    model = MultiTaskModel(encoder, [TaskSpec(task.name, task.labels) for task in tasks], dropout=0.0)
    config = tiny_config(tiny_bert_dir, tmp_path / "run", max_steps=80, eval_every=20)
    metrics = Trainer(config, tasks, model=model).fit(show_progress=False)
    assert metrics["dev"]["topic"]["accuracy"] == 1.0
    assert metrics["dev"]["mood"]["accuracy"] == 1.0
    losses = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    topic_losses = [
        record["loss"]["topic"]
        for record in losses
        if record["event"] == "train" and "topic" in record["loss"]
    ]
    assert topic_losses[-1] < topic_losses[0] / 5
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(written) >= {"dev", "test", "baseline", "config", "hardware", "history"}
    assert written["test"]["topic"]["confusion_matrix"] == [[3, 0, 0], [0, 3, 0], [0, 0, 3]]


def test_frozen_encoder_stays_frozen_and_uses_the_cache(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    config = tiny_config(tiny_bert_dir, tmp_path / "frozen", freeze="encoder")
    trainer = Trainer(config, toy.tasks())
    before = {name: p.detach().clone() for name, p in trainer.model.encoder.named_parameters()}
    heads_before = {name: p.detach().clone() for name, p in trainer.model.heads.named_parameters()}
    metrics = trainer.fit(show_progress=False)
    assert metrics["embeddings_cached"]
    for name, parameter in trainer.model.encoder.named_parameters():
        torch.testing.assert_close(parameter, before[name], rtol=0, atol=0)
    assert any(not torch.equal(p, heads_before[n]) for n, p in trainer.model.heads.named_parameters())


def test_cached_fast_path_equals_the_slow_path(toy: ToyData, tiny_bert_dir: Path, tmp_path: Path) -> None:
    sgd = {"freeze": "encoder", "frozen_solver": "sgd"}  # the convex solver needs the cache
    fast = train(tiny_config(tiny_bert_dir, tmp_path / "fast", **sgd), toy.tasks(), show_progress=False)
    slow = train(
        tiny_config(tiny_bert_dir, tmp_path / "slow", cache_embeddings=False, **sgd),
        toy.tasks(),
        show_progress=False,
    )
    assert fast["embeddings_cached"] and not slow["embeddings_cached"]
    fast_heads, slow_heads = head_weights(tmp_path / "fast"), head_weights(tmp_path / "slow")
    for key in fast_heads:
        torch.testing.assert_close(fast_heads[key], slow_heads[key], atol=1e-5, rtol=1e-4)
    assert fast["dev"] == slow["dev"]


def test_resume_ends_with_the_same_metrics(toy: ToyData, tiny_bert_dir: Path, tmp_path: Path) -> None:
    straight = train(tiny_config(tiny_bert_dir, tmp_path / "straight"), toy.tasks(), show_progress=False)

    interrupted = Trainer(tiny_config(tiny_bert_dir, tmp_path / "resumed"), toy.tasks())
    stop_after_step(interrupted, 6)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        interrupted.fit(show_progress=False)
    assert (
        json.loads((tmp_path / "resumed" / "last" / "trainer_state.json").read_text())["train_state"]["step"]
        == 6
    )

    resumed = train(
        load_saved_config(tmp_path / "resumed", device="cpu"), toy.tasks(), resume=True, show_progress=False
    )
    assert resumed["resumed_from_step"] == 6
    assert resumed["dev"] == straight["dev"] and resumed["test"] == straight["test"]
    for key, value in head_weights(tmp_path / "straight").items():
        torch.testing.assert_close(head_weights(tmp_path / "resumed")[key], value, rtol=0, atol=1e-6)


def test_same_seed_same_metrics(toy: ToyData, tiny_bert_dir: Path, tmp_path: Path) -> None:
    first = train(tiny_config(tiny_bert_dir, tmp_path / "a"), toy.tasks(), show_progress=False)
    second = train(tiny_config(tiny_bert_dir, tmp_path / "b"), toy.tasks(), show_progress=False)
    assert first["dev"] == second["dev"] and first["history"] == second["history"]


def test_existing_output_is_not_overwritten(toy: ToyData, tiny_bert_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInputError, match="--overwrite"):
        train(tiny_config(tiny_bert_dir, output, max_steps=2), toy.tasks(), show_progress=False)
    train(tiny_config(tiny_bert_dir, output, max_steps=2), toy.tasks(), overwrite=True, show_progress=False)
    assert (output / "notes.txt").read_text() == "keep me" and (output / "best").is_dir()


def test_non_finite_losses_are_skipped_then_stop_the_run(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    config = tiny_config(tiny_bert_dir, tmp_path / "nan", max_steps=40, eval_every=2, max_bad_steps=3)
    trainer = Trainer(config, toy.tasks())
    original_step = trainer.train_step

    def step_with_a_poisoned_loss():
        if trainer.state.step == 4:  # NaN class weights make every later loss NaN
            for weights in trainer.loss.class_weights.values():
                weights.fill_(float("nan"))
        return original_step()

    trainer.train_step = step_with_a_poisoned_loss
    with pytest.raises(TrainingDivergedError, match="last good checkpoint"):
        trainer.fit(show_progress=False)
    assert trainer.state.bad_steps == 3
    weights = head_weights(tmp_path / "nan")
    assert all(torch.isfinite(value).all() for value in weights.values())
    saved = json.loads((tmp_path / "nan" / "last" / "trainer_state.json").read_text())
    assert saved["train_state"]["step"] == 6  # the eval at step 6 saw finite weights (updates were skipped)


def test_layer_wise_learning_rates_and_no_decay_groups(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    config = tiny_config(tiny_bert_dir, tmp_path / "lr", encoder_lr=1e-4, head_lr=1e-2, layer_decay=0.5)
    trainer = Trainer(config, toy.tasks())
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in trainer.optimizer.param_groups for p in g["params"]}
    layers = trainer.model.encoder.transformer_layers()
    top_dense = layers[1].intermediate.dense
    assert lr_of[id(top_dense.weight)] == (1e-4, 0.01)
    assert lr_of[id(top_dense.bias)] == (1e-4, 0.0)
    assert lr_of[id(layers[0].intermediate.dense.weight)][0] == pytest.approx(5e-5)
    embeddings = trainer.model.encoder.backbone.embeddings
    assert lr_of[id(embeddings.word_embeddings.weight)][0] == pytest.approx(2.5e-5)
    assert lr_of[id(embeddings.LayerNorm.weight)] == (pytest.approx(2.5e-5), 0.0)
    head = trainer.model.heads["topic"][-1]
    assert lr_of[id(head.weight)] == (1e-2, 0.01)


def test_linear_warmup_then_decay() -> None:
    factor = linear_schedule(warmup_steps=4, total_steps=12)
    assert [factor(step) for step in (0, 3, 4, 8, 12)] == [0.25, 1.0, 1.0, 0.5, 0.0]


def test_balanced_class_weights_follow_scikit_learn() -> None:
    weights = balanced_class_weights(torch.tensor([0, 0, 0, 1]), n_classes=3)
    torch.testing.assert_close(weights, torch.tensor([4 / 9, 4 / 3, 0.0]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, "--batch-size"),
        ({"max_steps": -1}, "--max-steps"),
        ({"sampling": "random"}, "valid: proportional"),
        ({"loss_weighting": "magic"}, "valid: equal"),
        ({"amp": "fp8"}, "--amp"),
        ({"layer_decay": 1.5}, "--layer-decay"),
        ({"objective": "loss"}, "valid: macro_f1, accuracy"),
        ({"frozen_solver": "adam"}, "valid: convex, sgd"),
        ({"min_steps": 0}, "--min-steps"),
    ],
)
def test_bad_config_values_are_named(overrides: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=message):
        TrainingConfig(output_dir=str(tmp_path), **overrides).validate()


def test_task4_script_smoke_run(tmp_path: Path) -> None:
    output = tmp_path / "smoke"
    result = subprocess.run(
        [
            sys.executable,
            "Task4/task4.py",
            "--max-steps",
            "5",
            "--output-dir",
            str(output),
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "majority baseline" in result.stdout and "topic" in result.stdout
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["steps"] == 5 and set(metrics["test"]) == {"topic", "sentiment"}
    assert (output / "best" / "multitask_config.json").is_file()


def test_task4_script_reports_bad_task_syntax(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "Task4/task4.py", "--task", "topic:somewhere", "--output-dir", str(tmp_path / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2 and result.stderr.startswith("error:") and "Traceback" not in result.stderr


IGNORED_WITH_INIT_FROM = (
    "--init-from brings its own encoder and heads, so --model, --head, --dropout would be"
)
SOLVER_DOES_NOTHING = "--frozen-solver picks how linear heads on a frozen encoder are trained, but"
SOLVER_FIX = "so it would do nothing; add --freeze encoder (with linear heads) or drop --frozen-solver"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--init-from", "{best}", "--head", "mlp", "--dropout", "0.3"],
            f"{IGNORED_WITH_INIT_FROM} ignored; drop --model, --head, --dropout",
        ),
        (["--frozen-solver", "sgd"], f"{SOLVER_DOES_NOTHING} the encoder is not frozen, {SOLVER_FIX}"),
        (
            ["--frozen-solver", "sgd", "--freeze", "encoder", "--head", "mlp"],
            f"{SOLVER_DOES_NOTHING} --head mlp trains its heads by SGD anyway, {SOLVER_FIX}",
        ),
    ],
)
def test_task4_refuses_flags_that_the_run_would_ignore(
    run_script: ScriptRunner,
    tiny_bert_dir: Path,
    task_dirs: tuple[Path, Path],
    finished_run: Path,
    tmp_path: Path,
    extra: list[str],
    message: str,
) -> None:
    """As Task 2 refuses --model beside --checkpoint: a flag typed for nothing is said, before any work."""
    flags = [
        "--model", str(tiny_bert_dir), "--task", f"topic={task_dirs[0]}", "--task", f"mood={task_dirs[1]}",
        "--max-steps", "1", "--batch-size", "4", "--device", "cpu", "--output-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    extra = [flag.format(best=finished_run / "best") for flag in extra]
    code, _, err = run_script("Task4/task4.py", *flags, *extra)
    assert code == 2
    assert err.splitlines() == [f"error: {message}"]
    assert not (tmp_path / "run").exists()


def test_continuing_one_task_keeps_the_frozen_head_and_tracks_the_other(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    # Task 3's scenario 3: start from a trained model, freeze the topic head, train on mood only.
    first = train(tiny_config(tiny_bert_dir, tmp_path / "both"), toy.tasks(), show_progress=False)
    config = tiny_config(
        tiny_bert_dir,
        tmp_path / "mood_only",
        init_from=str(tmp_path / "both" / "best"),
        freeze="head:topic",
        train_tasks=["mood"],
        max_steps=6,
        eval_every=3,
    )
    trainer = Trainer(config, toy.tasks())
    start = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    metrics = trainer.fit(show_progress=False)

    # Step 0 evaluates the starting model: it is the first run's best model.
    assert [record["step"] for record in metrics["history"]] == [0, 3, 6]
    assert metrics["history"][0]["topic/accuracy"] == first["dev"]["topic"]["accuracy"]
    last = dict(MultiTaskModel.load(tmp_path / "mood_only" / "last" / "model").named_parameters())
    topic_head = [name for name in start if name.startswith("heads.topic.")]
    assert topic_head
    for name in topic_head:
        torch.testing.assert_close(last[name], start[name], rtol=0, atol=0)
    assert any(not torch.equal(last[name], start[name]) for name in start if name.startswith("encoder."))
    trained = {
        task
        for line in (tmp_path / "mood_only" / "log.jsonl").read_text().splitlines()
        if (record := json.loads(line))["event"] == "train"
        for task in record["loss"]
    }
    assert trained == {"mood"}
    assert metrics["sampling_probabilities"] == {"mood": 1.0}


def test_select_on_picks_the_checkpoint_by_the_named_task_only(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    # An auxiliary task trains the encoder, but only the target's dev score chooses the checkpoint.
    metrics = train(
        tiny_config(tiny_bert_dir, tmp_path / "run", select_on=["mood"]), toy.tasks(), show_progress=False
    )
    evaluations = [record for record in metrics["history"] if record["event"] == "eval"]
    assert len(evaluations) == 3
    for record in evaluations:
        assert record["score"] == record["mood/macro_f1"]
    assert any(record["topic/macro_f1"] != record["mood/macro_f1"] for record in evaluations)  # it can fail
    best = max(evaluations, key=lambda record: record["mood/macro_f1"])  # the first best wins a tie
    assert metrics["best_step"] == best["step"]
    with pytest.raises(InvalidInputError, match=r"--select-on names \['weather'\]"):
        Trainer(tiny_config(tiny_bert_dir, tmp_path / "a", select_on=["weather"]), toy.tasks())
    with pytest.raises(InvalidInputError, match="--select-on is empty"):
        Trainer(tiny_config(tiny_bert_dir, tmp_path / "b", select_on=[]), toy.tasks())


def test_bad_train_tasks_and_init_from_are_named(toy: ToyData, tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"--train-tasks names \['weather'\]"):
        Trainer(tiny_config(tiny_bert_dir, tmp_path / "a", train_tasks=["weather"]), toy.tasks())
    with pytest.raises(InvalidInputError, match="--train-tasks is empty"):
        Trainer(tiny_config(tiny_bert_dir, tmp_path / "b", train_tasks=[]), toy.tasks())
    train(tiny_config(tiny_bert_dir, tmp_path / "topic", max_steps=2), toy.tasks()[:1], show_progress=False)
    with pytest.raises(InvalidInputError, match="no head for task 'mood'"):
        Trainer(
            tiny_config(tiny_bert_dir, tmp_path / "c", init_from=str(tmp_path / "topic" / "best")),
            toy.tasks(),
        )


def test_a_frozen_encoder_gets_its_linear_heads_solved_exactly(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression

    trainer = Trainer(tiny_config(tiny_bert_dir, tmp_path / "convex", freeze="encoder"), toy.tasks())
    metrics = trainer.fit(show_progress=False)
    assert metrics["steps"] == 1 and metrics["embeddings_cached"]
    solves = {entry["task"]: entry for entry in metrics["history"] if entry["event"] == "solve"}
    assert sorted(solves) == ["mood", "topic"]
    data = trainer.train_data["topic"]
    features = trainer.inputs.embeddings("train", "topic", data).cpu().numpy()
    reference = LogisticRegression(C=solves["topic"]["C"], max_iter=2000, class_weight="balanced")
    reference.fit(features, data.labels.numpy())
    with torch.no_grad():
        logits = trainer.model.classify(torch.from_numpy(features), "topic")
    expected = torch.from_numpy(reference.predict_proba(features)).float()
    torch.testing.assert_close(logits.softmax(-1), expected, atol=1e-4, rtol=1e-3)
    assert (tmp_path / "convex" / "best" / "model.safetensors").is_file()


def test_the_objective_sets_both_the_class_weights_and_the_checkpoint_criterion(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    skewed = toy.task("mood", {**toy.mood, "good": toy.mood["good"][:1]})
    accuracy = Trainer(tiny_config(tiny_bert_dir, tmp_path / "a", objective="accuracy"), [skewed])
    macro_f1 = Trainer(tiny_config(tiny_bert_dir, tmp_path / "f"), [skewed])
    assert accuracy.loss.class_weights["mood"] is None
    assert macro_f1.loss.class_weights["mood"] is not None  # balanced: the rare class weighs more
    assert macro_f1.loss.class_weights["mood"][1] > macro_f1.loss.class_weights["mood"][0]
    metrics = accuracy.fit(show_progress=False)
    evals = [entry for entry in metrics["history"] if entry["event"] == "eval"]
    assert all(entry["score"] == entry["mood/accuracy"] for entry in evals)
    overridden = TrainingConfig(objective="accuracy", class_weights="balanced")
    assert overridden.balanced and not TrainingConfig(objective="accuracy").balanced
