r"""What unlabelled text of the task adds to the few-label defaults: self-training, scored on dev.

Task 4 and SetFit learn from the labelled rows (and Task 4 from the label names) alone. A user often
has more text of the task without labels; this measures what it is worth with the simplest use of
it, self-training (Scudder 1965; Yarowsky 1995): for each set and seed,
1. the defaults' contrastive run on N rows per class (contrastive_dev's sampler, 8 label sentences a
   class) labels up to 2,000 other rows of the set's train split, whose labels it never sees;
2. its most confident N predictions a class join the sample as labelled rows;
3. a second run of the defaults, from the pretrained body, trains on both.
Both runs are scored on the same 600 dev rows as contrastive_dev's stages. One JSON line a variant
in OUT/self_training_n<N>.jsonl; finished runs are skipped on a rerun.

    python bench/self_training_dev.py --per-class 64 --sets sst mr mpqa cr --seeds 0 1 2
    python bench/self_training_dev.py --per-class 64 --summary
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from contrastive_dev import OUT, dev_task, trained_once
from dev_summary import summary
from fewshot import sample_rows

from sentence_mtl.data.task_folders import Split, TaskData, load_task_folder

UNLABELLED_ROWS = 2000
STAGES = {"self_training": {"names8": None, "self_trained": None}}


def unlabelled_texts(data: Path, name: str, per_class: int, seed: int) -> list[str]:
    """Up to UNLABELLED_ROWS train rows outside the sample (their labels are dropped), seeded."""
    full = load_task_folder(name, data / name, dev_fraction=0)
    sampled = set(sample_rows(full.train.labels, len(full.labels), per_class, seed))
    rest = [index for index in range(len(full.train)) if index not in sampled]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(rest, size=min(UNLABELLED_ROWS, len(rest)), replace=False)
    return [full.train.texts[index] for index in sorted(chosen)]


def self_training_runs(
    task: TaskData, texts: list[str], seed: int, per_class: int
) -> dict[str, dict[str, Any]]:
    """The defaults' run, then the defaults again on the sample and its most confident pseudo-labels."""
    records = {}
    trainer, _, seconds = trained_once(task, seed, label_sentences=8)
    scores = trainer.evaluate("test")[task.name]
    records["names8"] = {"acc": scores["accuracy"], "f1": scores["macro_f1"], "train_sec": seconds}
    predictions = [row[task.name] for row in trainer.model.predict(texts)]
    added_texts, added_labels = [], []
    for index, label in enumerate(task.labels):
        pairs = zip(predictions, texts, strict=True)
        mine = [(row["probability"], text) for row, text in pairs if row["label"] == label]
        confident = sorted(mine, reverse=True)[:per_class]
        added_texts += [text for _, text in confident]
        added_labels += [index] * len(confident)
    texts_now, labels_now = list(task.train.texts) + added_texts, list(task.train.labels) + added_labels
    train = Split(texts_now, labels_now, "sample and pseudo-labels")
    second, _, more_seconds = trained_once(dataclasses.replace(task, train=train), seed, label_sentences=8)
    scores = second.evaluate("test")[task.name]
    records["self_trained"] = {
        "acc": scores["accuracy"],
        "f1": scores["macro_f1"],
        "train_sec": seconds + more_seconds,
        "pseudo_labelled": len(added_texts),
    }
    return records


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--sets", nargs="+", default=["sst", "mr", "mpqa", "cr"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--per-class", type=int, default=64)
    parser.add_argument("--summary", action="store_true", help="print the summary of OUT")
    args = parser.parse_args()
    if args.summary:
        print(summary(args.out, STAGES))
        return
    path = args.out / f"self_training_n{args.per_class}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    done = {(r["set"], r["seed"]) for r in map(json.loads, lines)}
    for name in args.sets:
        for seed in args.seeds:
            if (name, seed) in done:
                continue
            task = dev_task(args.data, name, args.per_class, seed)
            texts = unlabelled_texts(args.data, name, args.per_class, seed)
            for variant, record in self_training_runs(task, texts, seed, args.per_class).items():
                line = json.dumps({"set": name, "seed": seed, "variant": variant, **record})
                with path.open("a", encoding="utf-8") as stream:
                    stream.write(line + "\n")
                print(line, flush=True)


if __name__ == "__main__":
    main()
