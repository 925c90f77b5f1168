"""Task 3 / Task 4 experiment grid on TREC-6 (topic) + SST-3 (sentiment), through the package's API.

Each run writes one small JSON in Task3/results/<experiment>/seed<N>.json with its dev and test
metrics, wall time and hardware. Runs whose JSON exists are skipped, so the grid can be filled in
over time and on several machines; `--tables` regenerates Task3/results/tables.md (mean ± std over
seeds).

    python Task3/experiments.py --list                       # the grid, its tags and what is done
    python Task3/experiments.py --only frozen                # cheap: cached embeddings
    python Task3/experiments.py --only mtl single --seeds 0 1 2
    python Task3/experiments.py --tables                     # rebuild the tables from the JSONs
    python Task3/experiments.py --only mtl --device cuda     # the fine-tuning grid on a GPU
    python Task3/experiments.py --device cuda --workers 6    # 6 runs at a time on one GPU

`--only` takes experiment names and tags (grid.py lists the tags): a word selects the experiment of
that exact name and every experiment carrying that tag, never the names that merely contain it.

Every run is fp32 unless `--amp` says otherwise, so seeds run on a CPU and on a GPU are comparable.
MiniLM at batch 32 leaves a GPU mostly idle (each step waits on Python), so `--workers N` runs N
runs at once in separate processes; their records say so (`concurrent_runs`), since their wall
times are then shared.

The script only reads the command line; grid.py declares the experiments, runner.py runs them and
tables.py renders the results.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from transformers.utils import logging as transformers_logging

from grid import GRID, select, tags_of
from runner import Paths, RunOptions, pending_runs, result_path, run_in_parallel
from tables import load_results, render


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="NAME_OR_TAG",
        help=f"run only these experiments, by exact name or tag (tags: {', '.join(tags_of(GRID))})",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default=None)
    parser.add_argument("--model", default=None, help="model folder or hub name (default: packaged MiniLM)")
    parser.add_argument("--data", type=Path, default=Paths.data, help="folder of the task folders")
    parser.add_argument("--amp", choices=("fp32", "bf16", "fp16", "auto"), default="fp32")
    parser.add_argument("--workers", type=int, default=1, help="runs at a time, each in its own process")
    parser.add_argument("--list", action="store_true", help="show the grid and which runs exist")
    parser.add_argument("--tables", action="store_true", help="only rebuild Task3/results/tables.md")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    try:
        selected = select(GRID, args.only)
    except ValueError as error:
        parser.error(f"argument --only: {error}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    transformers_logging.disable_progress_bar()
    paths = Paths(data=args.data)

    if args.list:
        for experiment in GRID:
            done = [seed for seed in args.seeds if result_path(paths.results, experiment, seed).is_file()]
            tags = ", ".join(experiment.tags)
            print(f"{experiment.name:<20} seeds done {done}  {experiment.description}  [{tags}]")
        return
    options = RunOptions(args.device, args.model, args.amp, args.workers, paths)
    runs = [] if args.tables else pending_runs(selected, args.seeds, paths.results)
    failures = run_in_parallel(runs, options, args.workers) if runs else []
    table = render(load_results(paths.results), GRID)
    paths.results.mkdir(parents=True, exist_ok=True)
    (paths.results / "tables.md").write_text(table, encoding="utf-8")
    print(table)
    if failures:
        raise SystemExit("failed runs:\n" + "\n".join(failures))


if __name__ == "__main__":
    main()
