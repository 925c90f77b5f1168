"""Peak memory of training on TREC-6 + SST-3 for each freezing strategy, one fresh process each.

Each strategy trains the packaged MiniLM with the plain recipe (batch 32, fp32) for a short
schedule, then evaluates dev and test as a full run does. Parameters, gradients, AdamW state and
the activations of a batch are all allocated within the first steps, so the strategies compare on
equal terms. A full run's peak can still be higher (allocator growth over many steps, more
checkpoints), so the figures are lower bounds. Reports the process's peak RSS and, on CUDA, the
allocator's peak.

    python bench/memory.py                        # about 4 minutes on 2 CPU cores
    python bench/memory.py --device cuda
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
from pathlib import Path

from transformers.utils import logging as transformers_logging

from sentence_mtl.devices import hardware_description, peak_memory, reset_peak_memory, resolve_device
from sentence_mtl.training import TrainingConfig, train

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STRATEGIES = {
    "K = 0 (frozen, heads solved)": "encoder",
    "K = 2": "top:2",
    "K = 4": "top:4",
    "K = all": "none",
}


def peak_of_one_run(freeze: str, steps: int, device: str | None, data: Path) -> dict[str, float]:
    """Runs in its own process, so ``ru_maxrss`` is this run's peak alone."""
    transformers_logging.disable_progress_bar()
    resolved = resolve_device(device)
    reset_peak_memory(resolved)
    with tempfile.TemporaryDirectory(prefix="memory-") as scratch:
        config = TrainingConfig(
            output_dir=scratch,
            tasks=[f"topic={data / 'trec'}", f"sentiment={data / 'sst'}"],
            freeze=freeze,
            class_weights="none",
            max_steps=steps,
            eval_every=steps,
            device=device,
            amp="fp32",
        )
        train(config, overwrite=True, show_progress=False)
    return peak_memory(resolved)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    print(f"{hardware_description(resolve_device(args.device))}; {args.steps} steps, batch 32, fp32")
    print("| strategy | peak RSS MiB | peak GPU MiB |")
    print("|---|---|---|")
    for name, freeze in STRATEGIES.items():
        with context.Pool(1) as pool:
            peak = pool.apply(peak_of_one_run, (freeze, args.steps, args.device, args.data))
        gpu = f"{peak['cuda_mib']:,.0f}" if "cuda_mib" in peak else "–"
        print(f"| {name} | {peak['rss_mib']:,.0f} | {gpu} |", flush=True)


if __name__ == "__main__":
    main()
