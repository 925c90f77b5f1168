"""Sentences naming each class: which label sets get them, what they add, and only on the contrastive path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import ToyData, tiny_config

from sentence_mtl.data.task_folders import Split, TaskData
from sentence_mtl.errors import InvalidInputError
from sentence_mtl.training import Trainer, TrainingConfig, load_saved_config
from sentence_mtl.training.checkpoint import STATE_FILE
from sentence_mtl.training.label_sentences import (
    label_sentence,
    names_are_words,
    task_with_label_sentences,
    with_label_sentences,
)
from sentence_mtl.training.method import load_run_tasks


def test_a_label_reads_as_words_in_its_sentence() -> None:
    assert label_sentence("positive") == "This sentence is positive."
    assert label_sentence("very_positive") == "This sentence is very positive."
    assert label_sentence("Sci-Tech") == "This sentence is Sci Tech."


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (["negative", "positive"], True),
        (["abbreviation", "entity", "human"], True),
        (["very_negative", "negative"], True),
        (["0", "1"], False),
        (["LABEL_0", "LABEL_1"], False),
        (["1 star", "2 stars"], True),
        (["spam", "42"], False),
    ],
)
def test_only_label_names_that_are_distinct_words_get_sentences(labels: list[str], words: bool) -> None:
    assert names_are_words(labels) is words


def task(labels: list[str], per_class: int) -> TaskData:
    texts = [f"row {i} of {label}" for label in labels for i in range(per_class)]
    indices = [k for k in range(len(labels)) for _ in range(per_class)]
    test = Split(["a test row"], [0], "test")
    return TaskData("mood", labels, Split(texts, indices, "train"), None, test, False)


def test_each_class_gains_its_copies_and_nothing_else_changes() -> None:
    given = task(["negative", "positive"], 3)
    added = task_with_label_sentences(given, 2)
    assert added.train.texts[:6] == given.train.texts and added.train.labels[:6] == given.train.labels
    assert added.train.texts[6:] == ["This sentence is negative."] * 2 + ["This sentence is positive."] * 2
    assert added.train.labels[6:] == [0, 0, 1, 1]
    assert added.test is given.test and added.dev is None and added.labels == given.labels
    assert len(given.train) == 6  # the task it came from is left as it was
    for unchanged in (task_with_label_sentences(given, 0), task_with_label_sentences(task(["0", "1"], 3), 2)):
        assert len(unchanged.train) == 6
    assert set(with_label_sentences({"mood": given}, 1)) == {"mood"}


def write_folder(toy: ToyData, folder: Path, labels: list[str], per_class: int) -> Path:
    rows = {label: [f"sentence {i} about {label}" for i in range(per_class)] for label in labels}
    path = toy.write_task(folder, rows)
    (path / "dev.tsv").unlink()
    return path


@pytest.mark.parametrize(
    ("labels", "method", "copies", "added"),
    [
        (["negative", "positive"], "auto", 8, 16),  # contrastive: 8 copies of each class's sentence
        (["negative", "positive"], "auto", 0, 0),
        (["negative", "positive"], "finetune", 8, 0),  # cross-entropy trains on the labelled rows only
        (["0", "1"], "auto", 8, 0),  # names that are not words add nothing
    ],
)
def test_the_contrastive_path_trains_on_the_label_sentences_and_counts_passes_by_labelled_rows(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path, labels: list[str], method: str, copies: int, added: int
) -> None:
    folder = write_folder(toy, tmp_path / "few", labels, 8)
    config = tiny_config(
        tiny_bert_dir, tmp_path / "run", tasks=[f"mood={folder}"], method=method, max_steps=None,
        min_steps=1, batch_size=6, label_sentences=copies,
    )  # fmt: skip
    trainer = Trainer(config, load_run_tasks(config))
    assert len(trainer.train_data["mood"]) == 16 + added
    assert trainer.batches_per_epoch == math.ceil((16 + added) / 6)
    if trainer.method == "contrastive":  # 8 labelled rows per class: 40 passes, whatever was added
        assert trainer.total_steps == 40 * trainer.batches_per_epoch


@pytest.mark.parametrize("copies", [-1, True, 1.5])
def test_a_label_sentence_count_that_is_not_a_whole_number_is_refused(copies: object) -> None:
    with pytest.raises(InvalidInputError, match="--label-sentences"):
        TrainingConfig(label_sentences=copies).validate()  # type: ignore[arg-type]


def test_a_run_saved_before_label_sentences_existed_resumes_without_them(tmp_path: Path) -> None:
    # Its rows had no label sentences; adding them on --resume would change the data mid-run.
    for name, saved, expected in (("old", {"seed": 3}, 0), ("new", {"seed": 3, "label_sentences": 8}, 8)):
        (tmp_path / name / "last").mkdir(parents=True)
        (tmp_path / name / "last" / STATE_FILE).write_text(json.dumps({"config": saved}), encoding="utf-8")
        config = load_saved_config(tmp_path / name)
        assert config.label_sentences == expected and config.seed == 3
