"""Which way a run trains the encoder, and which tasks get a dev split carved, by labels per class.

- ``finetune``: the encoder and the heads trained together by cross-entropy, the best checkpoint
  picked on dev.
- ``contrastive``: the encoder trained on pairs built from the labels, then each linear head solved
  exactly (:mod:`sentence_mtl.training.contrastive`).
- ``auto`` (the default): ``contrastive`` when every training task has at most
  :data:`FEW_LABELS_PER_CLASS` labelled rows per class on average and the encoder trains with linear
  heads; ``finetune`` otherwise.

Dev rows are carved from the train file of a task without a dev file only when it has more than
:data:`FEW_LABELS_PER_CLASS` rows per class, whatever the method: with a handful of labels per class
a carved dev split of two rows picks checkpoints and regularisation by noise, and takes rows away
from training. Such a task trains for its budget and keeps the last step's model; its heads get
scikit-learn's default regularisation. A dev file, when there is one, is always used.
docs/results.md ("Few labels") has the measurements behind the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

from sentence_mtl.data.task_folders import TaskData, carve_dev, load_tasks
from sentence_mtl.errors import InvalidInputError
from sentence_mtl.training.budget import StepBudget, step_budget
from sentence_mtl.training.config import TrainingConfig
from sentence_mtl.training.contrastive import contrastive_passes

FEW_LABELS_PER_CLASS = 64


def rows_per_class(task: TaskData) -> float:
    """Labelled training rows per class, counting rows carved off as dev (they came from train)."""
    rows = len(task.train) + (len(task.dev) if task.dev_carved and task.dev is not None else 0)
    return rows / len(task.labels)


def encoder_trains(config: TrainingConfig) -> bool:
    """Whether the freeze spec leaves any encoder layer trainable."""
    parts = {part.strip() for part in config.freeze.split("+")}
    return not parts & {"encoder", "top:0"}


def choose_method(config: TrainingConfig, tasks: Sequence[TaskData], head_type: str | None = None) -> str:
    """``finetune`` or ``contrastive``: the config's method, or for ``auto`` the rule of the module docstring.

    ``head_type`` is the model's (an ``--init-from`` model brings its own); by default the config's.
    An explicit ``contrastive`` that cannot work (a frozen encoder, MLP heads) is an error naming the
    conflicting flag.
    """
    trainable, linear = encoder_trains(config), (head_type or config.head) == "linear"
    if config.method == "contrastive":
        if not trainable:
            raise InvalidInputError(
                "--method contrastive trains the encoder, but --freeze freezes it; drop one of the two"
            )
        if not linear:
            raise InvalidInputError(
                "--method contrastive solves linear heads exactly after training the encoder; drop --head mlp"
            )
        return "contrastive"
    if config.method == "finetune":
        return "finetune"
    by_name = {task.name: task for task in tasks}
    training = [by_name[name] for name in config.named_tasks("train_tasks", by_name)]
    few = all(rows_per_class(task) <= FEW_LABELS_PER_CLASS for task in training)
    return "contrastive" if few and trainable and linear else "finetune"


def needs_carved_dev(task: TaskData, dev_fraction: float) -> bool:
    """Whether dev rows are cut from the task's train file: it has no dev file and more than a few labels."""
    return task.dev is None and dev_fraction > 0 and rows_per_class(task) > FEW_LABELS_PER_CLASS


def load_run_tasks(config: TrainingConfig) -> list[TaskData]:
    """The config's task folders, with dev rows carved from train where :func:`needs_carved_dev` says so."""
    tasks = load_tasks(config.tasks, seed=config.data_seed, dev_fraction=0)
    fraction, seed = config.dev_fraction, config.data_seed
    return [carve_dev(task, fraction, seed) if needs_carved_dev(task, fraction) else task for task in tasks]


def training_rows_per_class(tasks: Sequence[TaskData]) -> float:
    """Labelled training rows per class over the tasks a run trains on, counted together."""
    return sum(len(task.train) for task in tasks) / sum(len(task.labels) for task in tasks)


def method_budget(
    config: TrainingConfig, method: str, batches_per_epoch: int, has_dev: bool, rows_per_class: float
) -> StepBudget:
    """The step budget of a run of ``method``; a frozen encoder's exact solve (``convex``) is one step.

    The contrastive stage takes :func:`~sentence_mtl.training.contrastive.contrastive_passes` of
    ``rows_per_class`` (the run's :func:`training_rows_per_class`) unless ``--epochs`` or
    ``--max-steps`` is given, with no ``--min-steps`` floor. Without dev rows to select on, a run of
    either method is evaluated (heads solved on the contrastive path, ``best/`` written) once, at its
    end, unless ``--eval-every`` asks for more: there is nothing to pick a checkpoint by.
    """
    if method == "convex":
        return step_budget(batches_per_epoch, max_steps=1)
    contrastive = method == "contrastive"
    epochs = (
        config.epochs if config.epochs is not None or not contrastive else contrastive_passes(rows_per_class)
    )
    budget = step_budget(
        batches_per_epoch,
        grad_accumulation=config.grad_accumulation,
        epochs=epochs,
        max_steps=config.max_steps,
        min_steps=config.min_steps,
        eval_every=config.eval_every,
        warmup_ratio=config.warmup_ratio,
    )
    if not has_dev and config.eval_every is None:
        return StepBudget(budget.total_steps, budget.total_steps, budget.warmup_steps)
    return budget
