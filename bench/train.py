"""Benchmark the training loop on TREC (topic) + SST (sentiment) with the packaged MiniLM.

Measures, in one process and on the same batches:
  1. the Trainer's step rate vs a minimal plain PyTorch loop (forward, cross-entropy, backward, AdamW);
  2. length-grouped batches vs random batches;
  3. --amp bf16 vs fp32 (where the CPU has bf16 instructions; elsewhere it reports the slowdown);
  4. a frozen-encoder epoch on cached embeddings vs recomputing the encoder every batch;
  5. optionally one full fine-tuning epoch (--full-epoch).

    python bench/train.py                      # about 5 minutes on 2 CPU cores
    python bench/train.py --steps 40 --full-epoch
    python bench/train.py --device cuda --batch-size 128 --amp fp32 --full-epoch
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers.utils import logging as transformers_logging

from sentence_mtl.data.task_folders import load_task_folder
from sentence_mtl.devices import autocast, hardware_description
from sentence_mtl.training import Trainer, TrainingConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_trainer(output: Path, args: argparse.Namespace, **overrides) -> Trainer:
    values = dict(
        output_dir=str(output),
        model=args.model,
        batch_size=args.batch_size,
        device=args.device,
        amp=args.amp,
        seed=0,
    )
    values.update(overrides)
    tasks = [
        load_task_folder("topic", args.data / "trec", seed=0),
        load_task_folder("sentiment", args.data / "sst"),
    ]
    return Trainer(TrainingConfig(**values), tasks)


def trainer_steps_per_second(trainer: Trainer, steps: int) -> float:
    trainer.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def plain_steps_per_second(twin: Trainer, steps: int) -> float:
    """The minimal loop on a twin trainer (same seed, so the same batches in the same order).

    Same model, optimiser and schedule; no loss weighting, class weights, bookkeeping or checks.
    """
    model, optimizer, scheduler = twin.model, twin.optimizer, twin.scheduler
    collator = model.collator(twin.device)
    model.train()
    start = 0.0
    for index in range(steps + 1):
        if index == 1:
            start = time.perf_counter()
        task = twin.sampler.next_task()
        rows = next(twin.streams[task])
        data = twin.train_data[task]
        features = collator.collate([data.ids[i] for i in rows])
        labels = data.labels[torch.from_numpy(rows)].to(twin.device)
        with autocast(twin.device, twin.amp):
            logits = model(features, task)
        F.cross_entropy(logits.float(), labels).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    if twin.device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def frozen_epoch_seconds(trainer: Trainer) -> float:
    start = time.perf_counter()
    for _ in range(trainer.batches_per_epoch):
        trainer.train_step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model folder (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None)
    parser.add_argument("--amp", default="auto")
    parser.add_argument("--full-epoch", action="store_true", help="also time one whole fine-tuning epoch")
    parser.add_argument("--skip-bf16", action="store_true")
    args = parser.parse_args()
    transformers_logging.disable_progress_bar()
    scratch = Path(tempfile.mkdtemp(prefix="bench-train-"))

    grouped = make_trainer(scratch / "grouped", args)
    twin = make_trainer(scratch / "twin", args)
    random = make_trainer(scratch / "random", args, group_by_length=False)
    print(f"hardware: {hardware_description(grouped.device)}; amp {grouped.amp}; batch {args.batch_size}")
    print(
        f"epoch = {grouped.batches_per_epoch} batches (TREC train {len(grouped.train_data['topic'])}, "
        f"SST train {len(grouped.train_data['sentiment'])})\n"
    )

    rates: dict[str, list[float]] = {"trainer": [], "plain": [], "random": []}
    for _ in range(args.repeats):
        rates["trainer"].append(trainer_steps_per_second(grouped, args.steps))
        rates["plain"].append(plain_steps_per_second(twin, args.steps))
        rates["random"].append(trainer_steps_per_second(random, args.steps))
    median = {name: statistics.median(values) for name, values in rates.items()}
    sentences = args.batch_size
    print("| measurement | steps/s | sentences/s | ratio |")
    print("|---|---|---|---|")
    print(f"| plain loop, grouped | {median['plain']:.2f} | {median['plain'] * sentences:.0f} | 1 |")
    print(
        f"| Trainer, grouped batches | {median['trainer']:.2f} | {median['trainer'] * sentences:.0f} | "
        f"{median['trainer'] / median['plain']:.2f}× plain |"
    )
    print(
        f"| Trainer, random batches | {median['random']:.2f} | {median['random'] * sentences:.0f} | "
        f"grouped is {median['trainer'] / median['random']:.2f}× faster |"
    )

    if not args.skip_bf16 and grouped.device.type == "cpu":
        bf16 = make_trainer(scratch / "bf16", args, amp="bf16")
        rate = trainer_steps_per_second(bf16, max(3, args.steps // 5))
        print(
            f"| Trainer, grouped, --amp bf16 | {rate:.2f} | {rate * sentences:.0f} | "
            f"{rate / median['trainer']:.2f}× fp32 (CPU {torch.backends.cpu.get_cpu_capability()}) |"
        )

    frozen = {"freeze": "encoder", "frozen_solver": "sgd"}  # SGD epochs, on the cache or recomputed
    cached = make_trainer(scratch / "cached", args, **frozen)
    recompute = make_trainer(scratch / "recompute", args, cache_embeddings=False, **frozen)
    start = time.perf_counter()
    cached.inputs.embeddings("train", "topic", cached.train_data["topic"])
    cached.inputs.embeddings("train", "sentiment", cached.train_data["sentiment"])
    cache_seconds = time.perf_counter() - start
    cached_epoch = frozen_epoch_seconds(cached)
    recompute_rate = trainer_steps_per_second(recompute, args.steps)
    recompute_epoch = recompute.batches_per_epoch / recompute_rate
    print(
        f"\nfrozen encoder: building the cache {cache_seconds:.1f} s (once); "
        f"an epoch on cached embeddings {cached_epoch:.2f} s vs {recompute_epoch:.1f} s recomputing "
        f"(extrapolated from {args.steps} steps): "
        f"{recompute_epoch / cached_epoch:.0f}× faster per epoch"
    )

    if args.full_epoch:
        full = make_trainer(scratch / "full", args)
        start = time.perf_counter()
        for _ in range(full.batches_per_epoch):
            full.train_step()
        print(f"one full fine-tuning epoch (grouped, amp {full.amp}): {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
