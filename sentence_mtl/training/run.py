"""One training run end to end: claim the output folder, load the data, train, report.

This is what ``Task4/task4.py`` and ``Task3/experiments.py`` call; the
:class:`~sentence_mtl.training.loop.Trainer` is the piece to use for finer control (tests, benchmarks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentence_mtl.data.task_folders import TaskData
from sentence_mtl.training import distributed
from sentence_mtl.training.config import TrainingConfig
from sentence_mtl.training.loop import Trainer
from sentence_mtl.training.method import load_run_tasks
from sentence_mtl.training.run_folder import RunFolder


def train(
    config: TrainingConfig,
    tasks: list[TaskData] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) one training run end to end and return its metrics (also in metrics.json).

    ``tasks`` defaults to the config's ``NAME=DIR`` folders (the demo tasks without any). To resume,
    pass the config from :func:`~sentence_mtl.training.checkpoint.load_saved_config` and
    ``resume=True``. Started by ``torchrun`` (``WORLD_SIZE`` > 1), it joins the process group and
    trains with DistributedDataParallel (see RELIABILITY.md).
    """
    config.validate()  # before the folder is claimed: an empty --output-dir must not claim "."
    context, created = distributed.init_from_env(config.device)
    folder = RunFolder(config.output_dir, writer=context.is_main)
    try:
        # Checked and locked before anything loads; an earlier run's files stay until the first checkpoint.
        distributed.run_on_main(lambda: folder.claim(overwrite=overwrite, resume=resume), context)
        if tasks is None:
            tasks = load_run_tasks(config)
        trainer = Trainer(config, tasks, folder=folder)
        if resume:
            trainer.load_last(Path(config.output_dir) / "last")
        return trainer.fit(show_progress=show_progress)
    finally:
        folder.release()
        if created:
            distributed.cleanup()
