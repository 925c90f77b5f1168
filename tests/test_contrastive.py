"""The contrastive path for few labels: its pairs, its loss, the rule that picks it, and resume."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from conftest import ToyData, stop_after_step, tiny_config
from safetensors.torch import load_file

from sentence_mtl import MultiTaskModel, SentenceEncoder, TaskSpec
from sentence_mtl.errors import InvalidInputError, TrainingInterrupted
from sentence_mtl.training import Trainer, TrainingConfig, load_saved_config, train
from sentence_mtl.training.contrastive import contrastive_passes, cosine_pair_loss, pair_relations
from sentence_mtl.training.method import FEW_LABELS_PER_CLASS, choose_method, load_run_tasks


def contrastive_config(tiny_bert_dir: Path, output_dir: Path, **overrides: object) -> TrainingConfig:
    return tiny_config(tiny_bert_dir, output_dir, **{"method": "auto", "batch_size": 6, **overrides})


def test_pair_relations_mark_each_pair_once_with_its_relation() -> None:
    similar, different = pair_relations(torch.tensor([0, 1, 0, 2]))
    assert similar.nonzero().tolist() == [[0, 2]]
    assert different.nonzero().tolist() == [[0, 1], [0, 3], [1, 2], [1, 3], [2, 3]]
    assert not (similar & different).any() and not similar.diagonal().any() and not different.diagonal().any()


def test_pair_loss_is_zero_at_its_optimum_and_weighs_both_relations_equally() -> None:
    labels = torch.tensor([0, 0, 1, 2])
    optimum = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 0], [0, 0, 3.0]])  # scale does not matter
    assert cosine_pair_loss(optimum, labels).item() == pytest.approx(0.0, abs=1e-7)

    embeddings = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    unit = torch.nn.functional.normalize(embeddings, dim=-1)
    cosine = unit @ unit.T
    same = (cosine[0, 1] - 1) ** 2  # the one same-label pair against five different-label pairs
    others = torch.stack([cosine[i, j] ** 2 for i, j in [(0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]]).mean()
    torch.testing.assert_close(cosine_pair_loss(embeddings, labels), (same + others) / 2)

    lonely = torch.randn(1, 5, requires_grad=True)
    loss = cosine_pair_loss(lonely, torch.tensor([1]))
    loss.backward()
    assert loss.item() == 0.0 and lonely.grad is not None


def test_contrastive_batches_hold_one_task_and_its_labels(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    trainer = Trainer(contrastive_config(tiny_bert_dir, tmp_path / "run", max_steps=8), toy.tasks())
    assert trainer.method == "contrastive"
    label_of = {
        (task, tuple(ids)): int(label)
        for task, data in trainer.train_data.items()
        for ids, label in zip(data.ids, data.labels, strict=True)
    }
    seen: list[tuple[str, int]] = []
    forward = trainer.objective.forward

    def recording(batch: dict[str, torch.Tensor], task: str, labels: torch.Tensor) -> torch.Tensor:
        for ids, mask, label in zip(batch["input_ids"], batch["attention_mask"], labels, strict=True):
            key = (task, tuple(ids[mask.bool()].tolist()))
            assert key in label_of, "a row of another task, or no training row at all"
            assert label_of[key] == int(label)
            seen.append(key)
        return forward(batch, task, labels)

    trainer.objective.forward = recording
    for _ in range(8):
        trainer.train_step()
    assert {task for task, _ in seen} == {"topic", "mood"}


def test_the_pair_loss_falls_and_separates_classes_that_start_mixed(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    # Mean pooling without normalisation, as in the fine-tuning overfit test: the random tiny BERT's
    # normalised CLS vectors are all but parallel, which would test the random init, not the loss.
    task = toy.task("mood", toy.mood)
    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, pooling="mean", normalize=False, device="cpu")
    model = MultiTaskModel(encoder, [TaskSpec(task.name, task.labels)], dropout=0.0)
    # The labelled rows alone: this pins the loss (tests/test_label_sentences.py has the added rows).
    config = contrastive_config(
        tiny_bert_dir, tmp_path / "run", max_steps=20, eval_every=20, label_sentences=0
    )
    trainer = Trainer(config, [task], model=model)
    data = trainer.train_data["mood"]

    def loss_and_separation() -> tuple[float, float]:
        embeddings = trainer.inputs.embeddings("train", "mood", data)  # eval mode: no dropout noise
        trainer.inputs.clear()
        unit = torch.nn.functional.normalize(embeddings)
        similar, different = pair_relations(data.labels)
        cosine = unit @ unit.T
        return float(cosine_pair_loss(embeddings, data.labels)), float(
            cosine[similar].mean() - cosine[different].mean()
        )

    loss_before, separation_before = loss_and_separation()
    metrics = trainer.fit(show_progress=False)
    loss_after, separation_after = loss_and_separation()
    assert loss_after < loss_before / 3
    assert separation_before < 0.2 < 0.5 < separation_after
    assert metrics["method"] == "contrastive" and metrics["dev"]["mood"]["accuracy"] == 1.0


def rows(per_class: int, labels: int) -> dict[str, list[str]]:
    return {f"label{k}": [f"sentence {i} of class {k}" for i in range(per_class)] for k in range(labels)}


def test_the_defaults_pick_the_path_by_labels_per_class(toy: ToyData, tmp_path: Path) -> None:
    few = toy.write_task(tmp_path / "few", rows(8, 6))
    many = toy.write_task(tmp_path / "many", rows(FEW_LABELS_PER_CLASS + 10, 2))
    for folder in (few, many):
        (folder / "dev.tsv").unlink()

    # 6 classes × 8 rows and no dev file: contrastive, and no dev rows are carved from the 48.
    config = TrainingConfig(tasks=[f"few={few}"])
    (task,) = load_run_tasks(config)
    assert choose_method(config, [task]) == "contrastive" and task.dev is None and len(task.train) == 48
    # Many labels: fine-tuning, with dev rows carved; the carved rows still count as labels per class.
    config = TrainingConfig(tasks=[f"many={many}"])
    (task,) = load_run_tasks(config)
    assert choose_method(config, [task]) == "finetune" and task.dev_carved
    # One task with many labels makes a multi-task run fine-tune.
    both = TrainingConfig(tasks=[f"few={few}", f"many={many}"])
    assert choose_method(both, load_run_tasks(both)) == "finetune"
    # A frozen encoder or MLP heads leave the contrastive path out (still without a carved dev split);
    # asked for by name, they are errors.
    for overrides in ({"freeze": "encoder"}, {"freeze": "top:0"}, {"head": "mlp"}):
        config = TrainingConfig(tasks=[f"few={few}"], **overrides)
        (task,) = load_run_tasks(config)
        assert choose_method(config, [task]) == "finetune" and task.dev is None
        with pytest.raises(InvalidInputError, match="--method contrastive"):
            choose_method(TrainingConfig(tasks=[f"few={few}"], method="contrastive", **overrides), [task])
    assert choose_method(TrainingConfig(tasks=[f"few={few}"], method="finetune"), [task]) == "finetune"


def test_the_pair_stage_takes_fewer_passes_as_labels_per_class_grow() -> None:
    assert contrastive_passes(2) == contrastive_passes(8) == 40
    assert contrastive_passes(64) == pytest.approx(10) and contrastive_passes(1000) == 10
    between = [contrastive_passes(n) for n in (9, 16, 32, 63)]
    assert 40 > between[0] > between[1] > between[2] > between[3] > 10
    assert between[1] == pytest.approx(40 / 4 ** (1 / 3)) and between[2] == pytest.approx(40 / 16 ** (1 / 3))


@pytest.mark.parametrize(("per_class", "passes"), [(8, 40), (64, 10)])
def test_the_defaults_size_the_pair_stage_by_labels_per_class(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path, per_class: int, passes: int
) -> None:
    folder = toy.write_task(tmp_path / "few", rows(per_class, 2))
    (folder / "dev.tsv").unlink()
    config = contrastive_config(tiny_bert_dir, tmp_path / "run", tasks=[f"few={folder}"], max_steps=None)
    trainer = Trainer(config, load_run_tasks(config))
    assert trainer.method == "contrastive" and trainer.batches_per_epoch == math.ceil(2 * per_class / 6)
    assert trainer.total_steps == passes * trainer.batches_per_epoch
    # --epochs is taken as given.
    config = contrastive_config(
        tiny_bert_dir, tmp_path / "run", tasks=[f"few={folder}"], max_steps=None, epochs=3.0
    )
    assert Trainer(config, load_run_tasks(config)).total_steps == 3 * trainer.batches_per_epoch


@pytest.mark.parametrize("method", ["finetune", "contrastive"])
def test_a_run_without_dev_rows_is_evaluated_once_at_its_end(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing to select a checkpoint by: no evaluation (and no best/ written) before the last step.
    folder = toy.write_task(tmp_path / "few", rows(3, 2))
    (folder / "dev.tsv").unlink()
    config = contrastive_config(
        tiny_bert_dir, tmp_path / "run", tasks=[f"few={folder}"], method=method, eval_every=None
    )
    with caplog.at_level(logging.INFO, logger="sentence_mtl.training.loop"):
        metrics = train(config, load_run_tasks(config), show_progress=False)
    assert "step 12: no dev rows to select on, this step's model is kept" in caplog.text
    evaluations = [record["step"] for record in metrics["history"] if record["event"] == "eval"]
    assert metrics["method"] == method and evaluations == [12] and metrics["best_step"] == 12


def test_resume_mid_contrastive_stage_equals_an_uninterrupted_run(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    straight = train(
        contrastive_config(tiny_bert_dir, tmp_path / "straight"), toy.tasks(), show_progress=False
    )
    assert straight["method"] == "contrastive"

    interrupted = Trainer(contrastive_config(tiny_bert_dir, tmp_path / "resumed"), toy.tasks())
    stop_after_step(interrupted, 5)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        interrupted.fit(show_progress=False)
    resumed = train(
        load_saved_config(tmp_path / "resumed", device="cpu"), toy.tasks(), resume=True, show_progress=False
    )
    assert resumed["resumed_from_step"] == 5
    assert resumed["dev"] == straight["dev"] and resumed["test"] == straight["test"]
    weights = load_file(str(tmp_path / "resumed" / "best" / "model.safetensors"))
    for key, value in load_file(str(tmp_path / "straight" / "best" / "model.safetensors")).items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=1e-6)
