r"""How the contrastive path's defaults were chosen: variants scored on dev splits, never on test.

For each set and seed, N train rows per class (the sampler of bench/fewshot.py) train the encoder on
pairs; the heads are solved and scored on 600 rows of the set's dev split (seeded subsample).
  --stage schedule   passes × encoder learning rate: 40 × 5e-5 (the default), 20 × 5e-5, 40 × 2e-5,
                     80 × 2e-5; all fp32
  --stage variants   at the chosen schedule: the pair loss in fp32 (the default's loss), supervised
                     contrastive loss (Khosla et al. 2020, temperature 0.1) in fp32, and the pair
                     loss under bf16 autocast (speed and accuracy of --amp bf16 on this CPU)
  --stage passes     the pass count at the default LR in the default precision (--amp auto): 40, 20,
                     10 and 5; for larger N (--per-class 32, 64), where 40 passes over more rows
                     may move the encoder too far
  --stage interpolation
                     one default run, then the encoder's weights interpolated towards the pretrained
                     ones, θ = α·trained + (1 − α)·pretrained (WiSE-FT, Wortsman et al. 2022), the
                     heads solved at each α ∈ {1, 0.75, 0.5, 0.25, 0}; α = 1 is the default, α = 0 the
                     pretrained encoder
  --stage heads      one default run, then the head solved on its embeddings at inverse L2 strengths
                     C ∈ {1 (the default), 0.1, 10, 100}, and at C = 1 on the pretrained and the
                     trained embeddings side by side (concatenated)
  --stage end_to_end one default run (heads solved), then the encoder and the solved head fine-tuned
                     together by cross-entropy on the same rows, from a copy of that model for each of
                     (passes, encoder LR, head LR): SetFit's differentiable-head settings (16, 1e-5,
                     1e-2), the same with the fine-tuning head LR (16, 1e-5, 1e-3), and fine-tuning's
                     own (4, 5e-5, 1e-3); all in the precision of the default run
  --stage names_end_to_end
                     the same with the defaults' 8 label sentences a class in the contrastive run, and
                     SetFit's settings alone for the cross-entropy stage (on the labelled rows)
  --stage soup       the defaults' run (8 label sentences a class), then a second and a third run on the
                     same rows with other training seeds; the encoders of the first 2 and of all 3
                     averaged (a uniform model soup, Wortsman et al. 2022) and the heads solved on them
  --stage method     the two recipes --method auto chooses between, each with its defaults: contrastive
                     on every row (the recipe up to 64 rows per class) and fine-tuning with 10 % of
                     the rows carved as dev to pick the checkpoint and stop early (the recipe above).
                     The learning curve that places the threshold: run it at --per-class 64, 128, ...
  --stage label_names
                     the default run with K copies of "This sentence is {label}." a class among the
                     train rows (sentence_mtl/training/label_sentences.py), K ∈ {0, 2, 8, 64},
                     or (templates8) 8 sentences a class spread over four templates; the passes are
                     the defaults' count for the N labelled rows per class
--variants runs a subset of the stage's variants.
One JSON line a run (an α for interpolation) in OUT/<stage>.jsonl, or OUT/<stage>_n<N>.jsonl when
--per-class is not 8; finished runs are skipped on a rerun.

    python bench/contrastive_dev.py --stage schedule --sets sst mr mpqa --seeds 0 1
    python bench/contrastive_dev.py --stage variants --sets sst mr mpqa cr subj --seeds 0 1
    python bench/contrastive_dev.py --stage interpolation --sets sst mr mpqa cr subj tweeteval_sentiment \
        --seeds 0 1 2
    python bench/contrastive_dev.py --stage passes --per-class 64 --sets sst mr mpqa cr subj \
        tweeteval_sentiment --seeds 0 1 2
    python bench/contrastive_dev.py --stage passes --per-class 32 --sets sst mr mpqa cr subj \
        tweeteval_sentiment --seeds 0 1 2
    python bench/contrastive_dev.py --stage interpolation --per-class 64 --sets sst mr mpqa cr --seeds 0 1
    python bench/contrastive_dev.py --stage heads --sets sst mr mpqa cr subj tweeteval_sentiment --seeds 0 1 2
    python bench/contrastive_dev.py --stage heads --per-class 64 --sets sst mr cr mpqa --seeds 0 1
    python bench/contrastive_dev.py --stage end_to_end --sets sst mr mpqa cr subj tweeteval_sentiment \
        --seeds 0 1 2
    python bench/contrastive_dev.py --stage method --per-class 128 --sets sst mpqa tweeteval_sentiment \
        --seeds 0 1
    python bench/contrastive_dev.py --stage label_names --variants names0 names2 names8 \
        --sets sst mr mpqa cr subj tweeteval_sentiment --seeds 0 1 2
    python bench/contrastive_dev.py --stage label_names --per-class 64 --variants names0 names8 \
        --sets sst mr mpqa cr subj tweeteval_sentiment --seeds 0 1 2
    python bench/contrastive_dev.py --stage label_names --per-class 64 --variants names64 templates8 \
        --sets sst mr mpqa cr subj tweeteval_sentiment --seeds 0 1 2
    python bench/contrastive_dev.py --stage names_end_to_end --per-class 64 --sets sst mr mpqa cr subj \
        tweeteval_sentiment --seeds 0 1 2
    python bench/contrastive_dev.py --stage soup --per-class 64 --sets sst mr mpqa cr --seeds 0 1 2
    python bench/contrastive_dev.py --summary
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from dev_summary import summary
from fewshot import sample_rows
from sklearn.linear_model import LogisticRegression

from sentence_mtl.data.task_folders import Split, TaskData, carve_dev, load_task_folder
from sentence_mtl.training import Trainer, TrainingConfig, contrastive
from sentence_mtl.training.convex import MAX_ITERATIONS, dev_metric
from sentence_mtl.training.label_sentences import label_sentence

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "contrastive_dev_results"
DEV_ROWS = 600
# end_to_end variant: (passes, encoder learning rate, head learning rate)
END_TO_END = {"e16_enc1e-5_head1e-2": (16, 1e-5, 1e-2), "e16_enc1e-5_head1e-3": (16, 1e-5, 1e-3),
              "e4_enc5e-5_head1e-3": (4, 5e-5, 1e-3)}  # fmt: skip
# After a contrastive run with the label sentences: SetFit's differentiable-head settings alone.
NAMES_END_TO_END = {"e16_enc1e-5_head1e-2": END_TO_END["e16_enc1e-5_head1e-2"]}
# The templates8 variant's sentences naming a label: the defaults' first, then three as generic.
TEMPLATES = ("This sentence is {}.", "This text is {}.", "It is {}.", "{}")
# name: (passes, encoder learning rate, loss, amp)
STAGES: dict[str, dict[str, tuple[float, float, str, str] | None]] = {
    "schedule": {
        "e40_lr5e-5": (40, 5e-5, "pairs", "fp32"),
        "e20_lr5e-5": (20, 5e-5, "pairs", "fp32"),
        "e40_lr2e-5": (40, 2e-5, "pairs", "fp32"),
        "e80_lr2e-5": (80, 2e-5, "pairs", "fp32"),
    },
    "variants": {
        "pairs_fp32": (40, 5e-5, "pairs", "fp32"),
        "supcon_fp32": (40, 5e-5, "supcon", "fp32"),
        "pairs_bf16": (40, 5e-5, "pairs", "bf16"),
    },
    "passes": {f"e{passes}": (passes, 5e-5, "pairs", "auto") for passes in (40, 20, 10, 5)},
    # One default run (--amp auto) a set and seed; each α only changes the weights its heads are solved on.
    "interpolation": {
        f"alpha{alpha:.2f}": (40, 5e-5, "pairs", "auto") for alpha in (1.0, 0.75, 0.5, 0.25, 0.0)
    },
    # The same one run; each variant only changes the head's C or the embeddings it is solved on.
    "heads": {name: (40, 5e-5, "pairs", "auto") for name in ("c1", "c0.1", "c10", "c100", "concat_c1")},
    # One default run; each variant fine-tunes a copy of it end to end (see END_TO_END).
    "end_to_end": {"contrastive": None, **dict.fromkeys(END_TO_END)},
    # The same with the defaults' 8 label sentences a class in the contrastive run.
    "names_end_to_end": {"names8": None, **dict.fromkeys(NAMES_END_TO_END)},
    # The defaults' run, then the encoders of 2 and 3 runs from different training seeds averaged.
    "soup": {name: None for name in ("names8", "soup2", "soup3")},
    # Each method with its own defaults (see method_run).
    "method": {"contrastive": None, "finetune": None},
    # The default run with K sentences "This sentence is {label}." a class added to the train rows
    # (training.label_sentences), or 8 spread over TEMPLATES; the passes are the defaults' count for
    # the sample alone (run_stage).
    "label_names": {f"names{copies}": (40, 5e-5, "pairs", "auto") for copies in (0, 2, 8, 64)}
    | {"templates8": (40, 5e-5, "pairs", "auto")},
}


def supervised_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Khosla et al. 2020's loss at temperature 0.1: each row's same-label rows against all others."""
    unit = F.normalize(embeddings.float(), dim=-1)
    own = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    logits = (unit @ unit.T / 0.1).masked_fill(own, float("-inf"))
    log_probability = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~own
    anchors = positive.any(dim=1)
    if not anchors.any():
        return unit.sum() * 0.0
    summed = log_probability.masked_fill(~positive, 0.0).sum(dim=1)
    return -(summed[anchors] / positive.sum(dim=1)[anchors]).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "pairs": contrastive.cosine_pair_loss,
    "supcon": supervised_contrastive_loss,
}


def dev_task(data: Path, name: str, per_class: int, seed: int) -> TaskData:
    """N rows per class from train as train; a seeded 600-row subsample of dev as the scored split."""
    full = load_task_folder(name, data / name, dev_fraction=0)
    rows = sample_rows(full.train.labels, len(full.labels), per_class, seed)
    train = Split([full.train.texts[i] for i in rows], [full.train.labels[i] for i in rows], "sample")
    if full.dev is None:
        raise SystemExit(f"{name} has no dev split to score on; choose sets that have one")
    held = np.random.default_rng(123).permutation(len(full.dev))[:DEV_ROWS]
    dev = Split([full.dev.texts[i] for i in held], [full.dev.labels[i] for i in held], "dev subsample")
    return TaskData(name, full.labels, train, None, dev, False)  # scored as "test": dev picks nothing


def run(
    task: TaskData, seed: int, variant: tuple[float, float, str, str], label_sentences: int = 0
) -> dict[str, Any]:
    """One contrastive run of ``variant``; the stages before the label_names stage had no label sentences."""
    epochs, learning_rate, loss, amp = variant
    contrastive.cosine_pair_loss = LOSSES[loss]  # the stage's loss, looked up at each call
    try:
        with tempfile.TemporaryDirectory(prefix="contrastive-dev-") as scratch:
            config = TrainingConfig(
                output_dir=scratch,
                method="contrastive",
                epochs=epochs,
                encoder_lr=learning_rate,
                seed=seed,
                amp=amp,
                label_sentences=label_sentences,
            )
            started = time.perf_counter()
            metrics = Trainer(config, [task]).fit(show_progress=False)
            wall = time.perf_counter() - started
    finally:
        contrastive.cosine_pair_loss = LOSSES["pairs"]
    scores = metrics["test"][task.name]
    accuracy, f1 = scores["accuracy"], scores["macro_f1"]
    return {"acc": accuracy, "f1": f1, "train_sec": metrics["train_seconds"], "wall_sec": round(wall, 1)}


def method_run(task: TaskData, seed: int, method: str) -> dict[str, Any]:
    """One run of ``method`` with no other setting; fine-tuning gets its dev rows carved from train."""
    with tempfile.TemporaryDirectory(prefix="contrastive-dev-") as scratch:
        config = TrainingConfig(output_dir=scratch, method=method, seed=seed, label_sentences=0)
        if method == "finetune":
            task = carve_dev(task, config.dev_fraction, config.data_seed)
        started = time.perf_counter()
        metrics = Trainer(config, [task]).fit(show_progress=False)
        wall = time.perf_counter() - started
    scores = metrics["test"][task.name]
    return {
        "acc": scores["accuracy"],
        "f1": scores["macro_f1"],
        "train_sec": metrics["train_seconds"],
        "wall_sec": round(wall, 1),
    }


def templated_task(task: TaskData, copies: int) -> TaskData:
    """``task`` with ``copies`` sentences a label, spread evenly over TEMPLATES, added to its train rows."""
    texts, labels = list(task.train.texts), list(task.train.labels)
    for index, label in enumerate(task.labels):
        texts += [label_sentence(label, TEMPLATES[copy_ % len(TEMPLATES)]) for copy_ in range(copies)]
        labels += [index] * copies
    return dataclasses.replace(task, train=Split(texts, labels, f"{task.train.source} and templates"))


def label_run(task: TaskData, seed: int, variant: str, passes: float) -> dict[str, Any]:
    """A label_names variant: namesK adds K copies of the defaults' sentence, templatesK K over TEMPLATES."""
    schedule = (passes, *STAGES["label_names"][variant][1:])
    if variant.startswith("templates"):
        return run(templated_task(task, int(variant.removeprefix("templates"))), seed, schedule)
    return run(task, seed, schedule, int(variant.removeprefix("names")))


def trained_once(
    task: TaskData, seed: int, label_sentences: int = 0
) -> tuple[Trainer, dict[str, torch.Tensor], float]:
    """One default contrastive run; the trainer, the encoder's pretrained weights and the training seconds."""
    with tempfile.TemporaryDirectory(prefix="contrastive-dev-") as scratch:
        config = TrainingConfig(
            output_dir=scratch, method="contrastive", seed=seed, label_sentences=label_sentences
        )
        trainer = Trainer(config, [task])
        pretrained = {key: value.clone() for key, value in trainer.model.encoder.state_dict().items()}
        metrics = trainer.fit(show_progress=False)
    return trainer, pretrained, metrics["train_seconds"]


def embedded(trainer: Trainer, task: TaskData, weights: dict[str, torch.Tensor]) -> tuple[np.ndarray, ...]:
    """Train embeddings, train labels, scored embeddings and scored labels under the encoder ``weights``."""
    trainer.model.encoder.load_state_dict(weights)
    trainer.inputs.clear()
    train, scored = trainer.train_data[task.name], trainer.test_data[task.name]
    train_x = trainer.inputs.embeddings("train", task.name, train).cpu().numpy()
    scored_x = trainer.inputs.embeddings("test", task.name, scored).cpu().numpy()
    return train_x, train.labels.numpy(), scored_x, scored.labels.numpy()


def scored(
    train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray, truth: np.ndarray, strength: float
) -> dict[str, float]:
    """A logistic-regression head at inverse L2 strength ``strength``, scored on ``x``."""
    head = LogisticRegression(C=strength, max_iter=MAX_ITERATIONS).fit(train_x, train_y)
    predicted = head.predict(x)
    return {"acc": dev_metric("accuracy", truth, predicted), "f1": dev_metric("macro_f1", truth, predicted)}


def interpolated_runs(task: TaskData, seed: int) -> dict[str, dict[str, Any]]:
    """Each α of the interpolation stage: the encoder moved towards its pretrained weights, heads solved."""
    trainer, pretrained, seconds = trained_once(task, seed)
    trained = {key: value.clone() for key, value in trainer.model.encoder.state_dict().items()}
    records = {}
    for variant in STAGES["interpolation"]:
        alpha = float(variant.removeprefix("alpha"))
        mixed = {
            key: alpha * value + (1 - alpha) * pretrained[key] if value.is_floating_point() else value
            for key, value in trained.items()
        }
        records[variant] = {**scored(*embedded(trainer, task, mixed), 1.0), "train_sec": seconds}
    return records


def soup_runs(task: TaskData, seed: int) -> dict[str, dict[str, Any]]:
    """The defaults' run and two more training seeds on the same rows; their encoders averaged, heads solved.

    A uniform model soup (Wortsman et al. 2022): the weights of runs from one pretrained start are
    averaged, so prediction costs one encoder while training costs one run per member.
    """
    weights: list[dict[str, torch.Tensor]] = []
    records, seconds = {}, 0.0
    for member, variant in enumerate(STAGES["soup"]):
        trainer, _, member_seconds = trained_once(task, seed + 1000 * member, label_sentences=8)
        weights.append({key: value.clone() for key, value in trainer.model.encoder.state_dict().items()})
        seconds += member_seconds
        soup = {
            key: sum(w[key] for w in weights) / len(weights) if value.is_floating_point() else value
            for key, value in weights[0].items()
        }
        records[variant] = {**scored(*embedded(trainer, task, soup), 1.0), "train_sec": seconds}
    return records


def head_runs(task: TaskData, seed: int) -> dict[str, dict[str, Any]]:
    """Each variant of the heads stage on one trained encoder: a C, or both encoders' embeddings at C = 1."""
    trainer, pretrained, seconds = trained_once(task, seed)
    trained = {key: value.clone() for key, value in trainer.model.encoder.state_dict().items()}
    train_x, train_y, x, truth = embedded(trainer, task, trained)
    old_train_x, _, old_x, _ = embedded(trainer, task, pretrained)
    both = (np.hstack([old_train_x, train_x]), train_y, np.hstack([old_x, x]), truth)
    records = {}
    for variant in STAGES["heads"]:
        if variant.startswith("concat"):
            records[variant] = {**scored(*both, 1.0), "train_sec": seconds}
        else:
            strength = float(variant.removeprefix("c"))
            records[variant] = {**scored(train_x, train_y, x, truth, strength), "train_sec": seconds}
    return records


def end_to_end_runs(
    task: TaskData,
    seed: int,
    label_sentences: int = 0,
    settings: dict[str, tuple[int, float, float]] = END_TO_END,
) -> dict[str, dict[str, Any]]:
    """The default run, then for each setting a copy of its encoder and solved head fine-tuned together.

    The cross-entropy stage trains on the task's labelled rows alone, with or without label sentences
    in the contrastive run before it.
    """
    trainer, _, seconds = trained_once(task, seed, label_sentences)
    default = trainer.evaluate("test")[task.name]  # the model as the contrastive path leaves it
    first = "contrastive" if label_sentences == 0 else f"names{label_sentences}"
    records = {first: {"acc": default["accuracy"], "f1": default["macro_f1"], "train_sec": seconds}}
    for variant, (epochs, encoder_lr, head_lr) in settings.items():
        with tempfile.TemporaryDirectory(prefix="contrastive-dev-") as scratch:
            config = TrainingConfig(
                output_dir=scratch,
                method="finetune",
                epochs=epochs,
                min_steps=1,
                encoder_lr=encoder_lr,
                head_lr=head_lr,
                seed=seed,
                amp=trainer.amp,  # the precision the default was trained and scored in
            )
            metrics = Trainer(config, [task], model=copy.deepcopy(trainer.model)).fit(show_progress=False)
        scores = metrics["test"][task.name]
        total = seconds + metrics["train_seconds"]
        records[variant] = {"acc": scores["accuracy"], "f1": scores["macro_f1"], "train_sec": total}
    return records


ONE_RUN_STAGES = {
    "interpolation": interpolated_runs,
    "heads": head_runs,
    "end_to_end": end_to_end_runs,
    "soup": soup_runs,
    "names_end_to_end": functools.partial(end_to_end_runs, label_sentences=8, settings=NAMES_END_TO_END),
}


def run_stage(args: argparse.Namespace) -> None:
    """Every set, seed and variant of the stage not yet in its JSONL file, one JSON line each."""
    suffix = "" if args.per_class == 8 else f"_n{args.per_class}"
    path = args.out / f"{args.stage}{suffix}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    done = {(r["set"], r["seed"], r["variant"]) for r in map(json.loads, lines)}
    for name in args.sets:
        for seed in args.seeds:
            variants = STAGES[args.stage]
            wanted = args.variants or list(variants)
            missing = [variant for variant in wanted if (name, seed, variant) not in done]
            if not missing:
                continue
            task = dev_task(args.data, name, args.per_class, seed)
            if args.stage in ONE_RUN_STAGES:
                results = ONE_RUN_STAGES[args.stage](task, seed)
            elif args.stage == "method":
                results = {variant: method_run(task, seed, variant) for variant in missing}
            elif args.stage == "label_names":  # the pass count the defaults give the sample alone
                passes = contrastive.contrastive_passes(args.per_class)
                results = {variant: label_run(task, seed, variant, passes) for variant in missing}
            else:
                results = {variant: run(task, seed, variants[variant]) for variant in missing}
            for variant in missing:
                record = {"set": name, "seed": seed, "variant": variant, **results[variant]}
                with path.open("a", encoding="utf-8") as stream:
                    stream.write(json.dumps(record) + "\n")
                print(record, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the DATA folder")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--stage", choices=tuple(STAGES), default=None)
    parser.add_argument("--sets", nargs="+", default=["sst", "mr", "mpqa", "cr", "subj"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--variants", nargs="+", default=None, help="a subset of the stage's variants")
    parser.add_argument("--summary", action="store_true", help="print the summary of OUT")
    args = parser.parse_args()
    unknown = set(args.variants or ()) - set(STAGES.get(args.stage) or ())
    if unknown:
        parser.error(f"--variants {sorted(unknown)} are not variants of --stage {args.stage}")
    if args.stage:
        run_stage(args)
    if args.summary:
        print(summary(args.out, STAGES))


if __name__ == "__main__":
    main()
