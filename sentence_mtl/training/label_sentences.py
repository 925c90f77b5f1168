"""Sentences that name each class, added to the few labelled rows of the contrastive path.

With a handful of rows per class, a label's name is often the best-informed row a task has
("positive", "sports", "location"). SetFit's ``get_templated_dataset`` (Tunstall et al. 2022) builds
such rows, "This sentence is {label}", to train without labelled data; here they join the labelled
rows of a task trained on the contrastive path, so the pair stage pulls each class towards its
name and the solved head sees it too. A task whose label names are not words (``0``/``1``,
``LABEL_0``/``LABEL_1``) gets none. docs/results.md ("Few labels") has the measurements behind
the number of copies.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence

from sentence_mtl.data.task_folders import Split, TaskData

logger = logging.getLogger(__name__)

TEMPLATE = "This sentence is {}."


def label_sentence(label: str, template: str = TEMPLATE) -> str:
    """The templated sentence for one label name; underscores and dashes read as spaces."""
    return template.format(re.sub(r"[_-]+", " ", label).strip())


def names_are_words(labels: Sequence[str]) -> bool:
    """Whether every label has a word in it once digits and punctuation go, and the words tell them apart."""
    words = [re.sub(r"[\W\d_]+", " ", label).strip().lower() for label in labels]
    return all(words) and len(set(words)) == len(words)


def with_label_sentences(tasks: Mapping[str, TaskData], copies: int) -> dict[str, TaskData]:
    """Each task with ``copies`` of each label's sentence added to its train rows, where they apply."""
    return {name: task_with_label_sentences(task, copies) for name, task in tasks.items()}


def task_with_label_sentences(task: TaskData, copies: int) -> TaskData:
    """``task`` with ``copies`` of each label's sentence added to its train rows (unchanged if none apply)."""
    if copies < 1:
        return task
    if not names_are_words(task.labels):
        logger.info("%s: its label names are not distinct words, so no label sentences are added", task.name)
        return task
    logger.info(
        "%s: %d copies of a sentence naming each label join its train rows (--label-sentences 0: none)",
        task.name,
        copies,
    )
    texts, labels = list(task.train.texts), list(task.train.labels)
    for index, name in enumerate(task.labels):
        texts += [label_sentence(name)] * copies
        labels += [index] * copies
    train = Split(texts, labels, f"{task.train.source} and {copies} sentence(s) naming each label")
    return dataclasses.replace(task, train=train)
