"""TaskSpec: a task's name and label names, and the one rule for task names.

Task names become ``nn.ModuleDict`` keys, command-line words (``topic=a,b``), freeze specs
(``head:topic``) and data arguments (``topic=DIR``). Data loading and the model check names with the
same function, so a task folder that loads also gets a head.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import nn

from sentence_mtl.errors import InvalidInputError, InvalidTypeError

_TASK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def check_task_name(name: object) -> str:
    """Return ``name`` if it can name a task everywhere, else raise an error that says how to rename it.

    Data loading and the model share this rule, so a task folder that loads also gets a head.
    """
    if not isinstance(name, str):
        raise InvalidTypeError(f"a task name must be a string, got {type(name).__name__}")
    if not _TASK_NAME.fullmatch(name):
        raise InvalidInputError(
            f"task name {name!r} is empty or odd: it may hold only letters, digits, '_' and '-', and must "
            "start with a letter (as in topic, sst-2); rename the task"
        )
    if hasattr(nn.ModuleDict(), name):
        raise InvalidInputError(f"task name {name!r} clashes with an nn.ModuleDict attribute; rename it")
    return name


@dataclass(frozen=True)
class TaskSpec:
    """A task's name and its label names; their order fixes the head's output units (logit i ↔ labels[i]).

    ``labels`` may be any sequence of strings; it is stored as a tuple, so a spec is hashable.
    """

    name: str
    labels: Sequence[str]

    def __post_init__(self) -> None:
        name, labels = check_task_name(self.name), self.labels
        if isinstance(labels, str) or not isinstance(labels, Iterable):
            raise InvalidTypeError(
                f"task {name!r}: labels must be a list of strings, not {type(labels).__name__}"
            )
        labels = tuple(labels)
        for label in labels:
            if not isinstance(label, str) or not label.strip():
                raise InvalidInputError(f"task {name!r}: each label must be a non-empty str, not {label!r}")
        if len(labels) < 2:
            raise InvalidInputError(
                f"task {name!r} has {len(labels)} label(s) {list(labels)}; a classifier needs two or more"
            )
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise InvalidInputError(f"task {name!r} lists the label(s) {duplicates} twice; list each once")
        # The dataclass is frozen, so the tuple is stored through object.__setattr__.
        object.__setattr__(self, "labels", labels)
