"""The experiment grid of Task 3 and Task 4: what each experiment changes, and how `--only` picks them.

Each experiment is one configuration of the plain loop with one or two knobs changed; every seed of
it is one run (see runner.py). An experiment's task folders are relative to the data folder, which
the runner is given, so the grid names no machine's paths.

`--only` selects by exact experiment name or by tag, never by substring, so a new experiment cannot
slip into a selection because its name happens to contain a word:

    mtl        multi-task fine-tuning (the Task 4 candidates, with their single-task twins)
    single     single-task fine-tuning (single_topic, single_sentiment and the twins)
    zero_shot  scenario 1: nothing trained
    frozen     scenario 2: frozen encoder, heads on cached embeddings
    top        top-K unfreezing
    forget     scenario 3: one head frozen while training continues
    amp        mixed precision, which needs bf16 hardware
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

TOPIC = "topic=trec"  # TREC-6, as NAME=DIR with DIR inside the data folder
SENTIMENT = "sentiment=sst"  # SST-3


@dataclass(frozen=True)
class Experiment:
    """One configuration of the grid; every seed of it is one run."""

    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = (TOPIC, SENTIMENT)
    start_from: Experiment | None = None  # an experiment whose seed-0 best checkpoint this one continues
    tags: tuple[str, ...] = ()
    twinned: bool = False  # the grid also trains each task alone with these settings


# The plain loop: AdamW 5e-5 / 1e-3, batch 32, 4 epochs, linear warm-up/decay, mean pooling, linear
# heads, proportional single-task batches, unweighted cross-entropy (pinned: the package's default
# became balanced class weights, mtl_balanced, once this grid measured it). Every other experiment
# varies one or two knobs from it.
FINETUNE = {
    "epochs": 4.0,
    "encoder_lr": 5e-5,
    "head_lr": 1e-3,
    "batch_size": 32,
    "class_weights": "none",
    "patience": None,  # every epoch's checkpoint is a candidate, as these rows were measured
}
FROZEN = {
    "freeze": "encoder",
    "epochs": 30.0,
    "head_lr": 3e-3,
    "warmup_ratio": 0.0,
    "eval_every": 500,
    "class_weights": "none",
    "frozen_solver": "sgd",  # heads trained by SGD on the cache, as these rows were measured
    "patience": None,
}

# Scenario 1 (everything frozen): nothing is trained; each label is described in words.
LABEL_DESCRIPTIONS = {
    "topic": {
        "abbreviation": "What does this abbreviation or acronym stand for?",
        "description": "A question asking for a description, definition, reason or manner.",
        "entity": "A question asking about a thing: an animal, color, food, product, event or term.",
        "human": "A question asking who: a person, a group or an organization.",
        "location": "A question asking where: a place, city, country, state or mountain.",
        "numeric": "A question asking for a number: how many, how much, when, a date, a size or a price.",
    },
    "sentiment": {
        "negative": "A negative review: the film is bad, boring and disappointing.",
        "neutral": "A neutral review: the film is neither good nor bad.",
        "positive": "A positive review: the film is good, moving and enjoyable.",
    },
}

# Scenario 3 (one head frozen): continue the plain multi-task model (seed 0's best checkpoint) with
# the topic head frozen for 200 steps (3/4 of an SST epoch), and watch the topic accuracy on dev as
# the shared encoder drifts: at the plain encoder LR (5e-5) and at 4× that (2e-4), where the question
# is whether interleaving topic batches (which update the encoder, not the frozen head) protects it.
# Each run's seed changes the batch order and dropout, not the starting model.
FORGET = {
    "freeze": "head:topic",
    "max_steps": 200,
    "eval_every": 25,
    "encoder_lr": 5e-5,
    "head_lr": 1e-3,
    "class_weights": "none",
}

# Scenario 3 starts from this model, so it is named before the grid that lists it.
PLAIN = Experiment("mtl_plain", "multi-task fine-tuning, the plain loop", FINETUNE, tags=("mtl",))


def single_task_twins(experiment: Experiment) -> list[Experiment]:
    """Each task trained alone with a multi-task experiment's settings: the same-budget comparison."""
    return [
        Experiment(
            f"{experiment.name}.single_{task}",
            f"single-task {task}, the settings of {experiment.name}",
            experiment.overrides,
            (spec,),
            tags=(*experiment.tags, "single"),
        )
        for task, spec in (("topic", TOPIC), ("sentiment", SENTIMENT))
    ]


def with_single_task_twins(*experiments: Experiment) -> tuple[Experiment, ...]:
    """The experiments, then the single-task twins of the twinned ones, in the same order."""
    twinned = [experiment for experiment in experiments if experiment.twinned]
    return (*experiments, *(twin for experiment in twinned for twin in single_task_twins(experiment)))


def mtl(name: str, description: str, overrides: dict[str, Any], twinned: bool = False) -> Experiment:
    """A multi-task candidate: the plain loop with ``overrides`` on top."""
    return Experiment(name, description, {**FINETUNE, **overrides}, tags=("mtl",), twinned=twinned)


def forget(name: str, description: str, overrides: dict[str, Any]) -> Experiment:
    """Scenario 3: the plain model continued with the topic head frozen."""
    return Experiment(name, description, {**FORGET, **overrides}, start_from=PLAIN, tags=("forget",))


# The twinned candidates are the dev candidates of Task 4 that change what a single-task run would do
# too (sampling and loss weighting do not: their single-task twins are single_topic and
# single_sentiment).
GRID: tuple[Experiment, ...] = with_single_task_twins(
    Experiment(
        "zero_shot_names",
        "nothing trained: nearest label name by cosine",
        {"zero_shot": "names"},
        tags=("zero_shot",),
    ),
    Experiment(
        "zero_shot_descriptions",
        "nothing trained: nearest label description by cosine",
        {"zero_shot": "descriptions"},
        tags=("zero_shot",),
    ),
    Experiment(
        "frozen_linear",
        "frozen encoder, linear heads on cached embeddings",
        {**FROZEN, "head": "linear"},
        tags=("frozen",),
    ),
    Experiment(
        "frozen_mlp",
        "frozen encoder, MLP heads on cached embeddings",
        {**FROZEN, "head": "mlp"},
        tags=("frozen",),
    ),
    PLAIN,
    Experiment("single_topic", "single-task fine-tuning on TREC", FINETUNE, (TOPIC,), tags=("single",)),
    Experiment(
        "single_sentiment", "single-task fine-tuning on SST", FINETUNE, (SENTIMENT,), tags=("single",)
    ),
    mtl("mtl_balanced", "multi-task, balanced class weights", {"class_weights": "balanced"}, twinned=True),
    mtl("mtl_epochs8", "multi-task, 8 epochs", {"epochs": 8.0}, twinned=True),
    mtl("mtl_label_smoothing", "multi-task, label smoothing 0.1", {"label_smoothing": 0.1}, twinned=True),
    mtl("mtl_mlp_head", "multi-task, MLP heads", {"head": "mlp"}, twinned=True),
    mtl("mtl_lr2e-5", "multi-task, encoder LR 2e-5", {"encoder_lr": 2e-5}),
    mtl("mtl_lr1e-4", "multi-task, encoder LR 1e-4", {"encoder_lr": 1e-4}),
    mtl(
        "mtl_lr1e-4_ld0.9",
        "multi-task, encoder LR 1e-4, layer decay 0.9",
        {"encoder_lr": 1e-4, "layer_decay": 0.9},
        twinned=True,
    ),
    mtl(
        "mtl_lr1e-4_ld0.9_balanced",
        "multi-task, encoder LR 1e-4, layer decay 0.9, balanced class weights",
        {"encoder_lr": 1e-4, "layer_decay": 0.9, "class_weights": "balanced"},
        twinned=True,
    ),
    mtl(
        "mtl_balanced_label_smoothing",
        "multi-task, balanced class weights, label smoothing 0.1",
        {"class_weights": "balanced", "label_smoothing": 0.1},
    ),
    mtl(
        "mtl_balanced_mlp_head",
        "multi-task, balanced class weights, MLP heads",
        {"class_weights": "balanced", "head": "mlp"},
    ),
    mtl(
        "mtl_label_smoothing_mlp_head",
        "multi-task, label smoothing 0.1, MLP heads",
        {"label_smoothing": 0.1, "head": "mlp"},
    ),
    mtl("mtl_uncertainty", "multi-task, uncertainty loss weighting", {"loss_weighting": "uncertainty"}),
    mtl(
        "mtl_temperature2",
        "multi-task, temperature sampling T=2",
        {"sampling": "temperature", "temperature": 2.0},
    ),
    mtl("mtl_round_robin", "multi-task, round-robin sampling", {"sampling": "round_robin"}),
    Experiment(
        "amp_bf16",
        "the plain loop under bf16 autocast (needs a GPU or a bf16 CPU: 22x slower on AVX2)",
        {**FINETUNE, "amp": "bf16"},
        # tagged amp, not mtl: `--only mtl` on a CPU must not start a run that needs bf16 hardware
        tags=("amp",),
    ),
    Experiment("top2", "top-2 layers unfrozen", {**FINETUNE, "freeze": "top:2"}, tags=("top",)),
    Experiment("top4", "top-4 layers unfrozen", {**FINETUNE, "freeze": "top:4"}, tags=("top",)),
    forget(
        "forget_sentiment_only",
        "topic head frozen, sentiment batches only, encoder LR 5e-5",
        {"train_tasks": ["sentiment"]},
    ),
    forget(
        "forget_high_lr",
        "topic head frozen, sentiment batches only, encoder LR 2e-4",
        {"train_tasks": ["sentiment"], "encoder_lr": 2e-4},
    ),
    forget(
        "forget_high_lr_interleaved",
        "topic head frozen, encoder LR 2e-4, topic batches interleaved (proportional)",
        {"encoder_lr": 2e-4},
    ),
)
TWINNED = tuple(experiment.name for experiment in GRID if experiment.twinned)


def experiment_named(name: str, grid: Sequence[Experiment] = GRID) -> Experiment:
    return next(experiment for experiment in grid if experiment.name == name)


def tags_of(grid: Iterable[Experiment]) -> list[str]:
    return sorted({tag for experiment in grid for tag in experiment.tags})


def select(grid: Sequence[Experiment], words: Sequence[str] | None) -> list[Experiment]:
    """The experiments that ``words`` name exactly or by tag, in grid order; all of them for no words.

    A word that is neither a name nor a tag is refused rather than selecting nothing, so a typo
    cannot pass for a finished grid.
    """
    if not words:
        return list(grid)
    known = {experiment.name for experiment in grid} | set(tags_of(grid))
    unknown = [word for word in words if word not in known]
    if unknown:
        raise ValueError(
            f"{', '.join(map(repr, unknown))}: neither an experiment nor a tag "
            f"(tags: {', '.join(tags_of(grid))}; experiments: see --list)"
        )
    chosen = set(words)
    return [e for e in grid if e.name in chosen or chosen.intersection(e.tags)]
