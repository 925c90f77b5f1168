r"""Quality of each runtime: STS-B dev Spearman of the encoder, and a trained checkpoint's test scores.

Every runtime encodes the same texts; int8 must stay within 0.3 Spearman points of fp32 on STS-B
dev, and within 0.5 accuracy points on each task's test split. Scores are deterministic (no
sampling anywhere), so one run gives them. It also times the heads, which run in torch on the
runtime's embeddings.

    python bench/int8_quality.py
    python bench/int8_quality.py --checkpoint runs/trec_sst/best \
        --task topic="$DATA/trec" --task sentiment="$DATA/sst"
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers.utils import logging as transformers_logging

from sentence_mtl import SentenceEncoder
from sentence_mtl.analysis.similarity import min_cosine, read_sts_pairs, sts_spearman
from sentence_mtl.data.task_folders import load_tasks
from sentence_mtl.metrics import classification_metrics
from sentence_mtl.model.multitask import MultiTaskModel

from encode import DATA

RUNTIMES = {
    "torch fp32": ("torch", None),
    "ONNX Runtime fp32": ("onnx", None),
    "ONNX Runtime int8": ("onnx", "int8"),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="encoder folder (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--checkpoint", type=Path, help="a MultiTaskModel folder saved by Task 4")
    parser.add_argument("--task", action="append", default=[], help="NAME=DIR with a test split")
    args = parser.parse_args()
    transformers_logging.disable_progress_bar()

    encoder = SentenceEncoder.from_pretrained(args.model, device="cpu")
    first, second, scores = read_sts_pairs(args.data / "stsb" / "dev.tsv")
    unique = sorted(set(first) | set(second))
    reference = encoder.encode(unique)
    print(f"{encoder.name}, STS-B dev ({len(scores)} pairs)")
    print("| runtime | min cosine vs torch | Spearman ×100 |\n|---|---|---|")
    for name, (backend, quantize) in RUNTIMES.items():
        vectors = encoder.encode(unique, backend=backend, quantize=quantize)
        spearman = sts_spearman(encoder, first, second, scores, backend=backend, quantize=quantize)
        print(f"| {name} | {min_cosine(vectors, reference):.7f} | {spearman:.2f} |")

    if args.checkpoint is None:
        return
    model = MultiTaskModel.load(args.checkpoint, device="cpu")
    tasks = [task for task in load_tasks(args.task) if task.test is not None]
    print(f"\n{args.checkpoint}, test splits: accuracy / macro-F1 ×100")
    print("| runtime | " + " | ".join(task.name for task in tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for name, (backend, quantize) in RUNTIMES.items():
        cells = []
        for task in tasks:
            predictions = model.predict(task.test.texts, backend=backend, quantize=quantize)
            predicted = [task.labels.index(row[task.name]["label"]) for row in predictions]
            metrics = classification_metrics(task.test.labels, predicted, task.labels)
            cells.append(f"{100 * metrics['accuracy']:.2f} / {100 * metrics['macro_f1']:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    heads_share(model, [text for task in tasks for text in task.test.texts])


def heads_share(model: MultiTaskModel, texts: list[str]) -> None:
    """How much of predict the heads take, in torch, next to the int8 encoder (the fastest one)."""
    started = time.perf_counter()
    embeddings = model.encoder.encode(texts, convert_to="tensor", backend="onnx", quantize="int8")
    encoding = time.perf_counter() - started
    started = time.perf_counter()
    with torch.inference_mode():
        model.classify(embeddings)
    heads = time.perf_counter() - started
    print(
        f"\nheads in torch on {len(texts):,} int8 embeddings: {1000 * heads:.1f} ms, "
        f"{100 * heads / (heads + encoding):.2f} % of predict ({encoding:.1f} s encoding)"
    )


if __name__ == "__main__":
    main()
