"""The multi-task training loop: task-sampled batches, weighted losses, evaluation, checkpoints.

Stage order follows Hugging Face's ``run_glue_no_trainer.py``; the checkpoint holds everything a
resumed run needs to continue bit-for-bit on CPU, as nanoGPT's does. Every batch belongs to one
task (MT-DNN, Liu et al. 2019), so datasets with disjoint sentences train one model together.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from sentence_mtl.data.task_folders import TaskData, tasks_by_name
from sentence_mtl.devices import cpu_has_bf16, hardware_description, resolve_device
from sentence_mtl.encoder.tokenization import Collator
from sentence_mtl.errors import InvalidInputError, TrainingDivergedError, TrainingInterrupted
from sentence_mtl.model.multitask import MultiTaskModel, build_model
from sentence_mtl.model.tasks import TaskSpec
from sentence_mtl.training import checkpoint, distributed, evaluation
from sentence_mtl.training.checkpoint import ResumeParts, TrainState
from sentence_mtl.training.config import TrainingConfig
from sentence_mtl.training.contrastive import ContrastiveForwardAndLoss
from sentence_mtl.training.convex import solve_heads
from sentence_mtl.training.inputs import ModelInputs, TokenizedSplit, batch_streams, tokenize_split
from sentence_mtl.training.label_sentences import with_label_sentences
from sentence_mtl.training.method import choose_method, method_budget, training_rows_per_class
from sentence_mtl.training.objective import ForwardAndLoss, task_loss
from sentence_mtl.training.optimization import (
    linear_schedule,
    parameter_groups,
    resolve_amp,
)
from sentence_mtl.training.run_folder import RunFolder
from sentence_mtl.training.sampling import TaskSampler, make_sampler
from sentence_mtl.training.signals import StopRequest

logger = logging.getLogger(__name__)


class Trainer:
    """Owns the model, data, optimiser and checkpoints of one run. Use :func:`train` for one call."""

    def __init__(
        self,
        config: TrainingConfig,
        tasks: list[TaskData],
        model: MultiTaskModel | None = None,
        folder: RunFolder | None = None,
    ):
        config.validate()
        self.config = config
        self.tasks = tasks_by_name(tasks)
        self.task_labels = {name: task.labels for name, task in self.tasks.items()}
        self.output_dir = Path(config.output_dir)
        # Under torchrun (see training.distributed) --batch-size is the global batch, split over ranks.
        self.dist = distributed.current_context()
        self.folder = folder or RunFolder(self.output_dir, writer=self.dist.is_main)
        if self.dist.world_size > config.batch_size:
            raise InvalidInputError(
                f"--batch-size {config.batch_size} is the global batch, split over {self.dist.world_size} "
                f"processes; it must be at least {self.dist.world_size}"
            )
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        self.device = resolve_device(config.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.model = self._prepare_model(model)
        self.method = choose_method(config, list(self.tasks.values()), self.model.head_type)
        self.amp = resolve_amp(
            config.amp, self.device, cpu_bf16=self.method == "contrastive" and cpu_has_bf16()
        )
        self.train_task_names = config.named_tasks("train_tasks", self.tasks)
        self.selection_task_names = config.named_tasks("select_on", self.tasks)
        rows_per_class = training_rows_per_class([self.tasks[name] for name in self.train_task_names])
        if self.method == "contrastive":  # before tokenising: the label sentences are train rows
            self.tasks = with_label_sentences(self.tasks, config.label_sentences)

        # Tokenise every split once; a frozen encoder's embeddings are computed once too.
        collator = self.model.collator(self.device)
        self.train_data = self._tokenize(collator, "train")
        self.dev_data = self._tokenize(collator, "dev")
        self.test_data = self._tokenize(collator, "test")
        self.cached = self.model.encoder_frozen and config.cache_embeddings
        self.inputs = ModelInputs(self.model, collator, self.amp, self.cached)

        # Batching and task sampling: only the training tasks get batches; the others are evaluated only.
        # Contrastive batches are drawn at random: length groups would narrow the pairs a row meets.
        training = {name: self.train_data[name] for name in self.train_task_names}
        by_length = config.group_by_length and self.method == "finetune"
        self.streams = batch_streams(training, config.batch_size, config.seed, by_length)
        sizes = {name: len(data) for name, data in training.items()}
        self.sampler: TaskSampler = make_sampler(config.sampling, sizes, config.seed, config.temperature)
        self.weighting, self.loss = task_loss(config, self.train_data, self.task_labels, self.device)
        forward = ContrastiveForwardAndLoss if self.method == "contrastive" else ForwardAndLoss
        self.objective = forward(self.inputs, self.loss)

        # Steps, optimiser, schedule.
        self.batches_per_epoch = sum(math.ceil(len(d) / config.batch_size) for d in training.values())
        self.convex = self.cached and config.frozen_solver == "convex" and self.model.head_type == "linear"
        has_dev = any(name in self.dev_data for name in self.selection_task_names)
        stage = "convex" if self.convex else self.method
        budget = method_budget(config, stage, self.batches_per_epoch, has_dev, rows_per_class)
        self.total_steps, self.eval_every = budget.total_steps, budget.eval_every
        self._build_optimizer(budget.warmup_steps)
        self.state = TrainState()
        self.stop = StopRequest()  # set by SIGINT/SIGTERM or request_stop
        self._agreed_stop: int | None = None  # under DDP: the signal every rank has agreed to stop on
        self.model.train()  # evaluation restores this mode; train_step relies on it
        # find_unused_parameters because each step uses one task's head only.
        self.ddp: DistributedDataParallel | None = None
        if self.dist.enabled:
            self.ddp = DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )

    # ------------------------------------------------------------------ set-up
    def _prepare_model(self, model: MultiTaskModel | None) -> MultiTaskModel:
        config = self.config
        if model is None:
            model = build_model(
                [TaskSpec(task.name, task.labels) for task in self.tasks.values()],
                config.model,
                init_from=config.init_from,
                head=config.head,
                dropout=config.dropout,
                hidden=config.hidden,
                max_length=config.max_length,
                trust_remote_code=config.trust_remote_code,
                device=self.device,
            )
        model = model.to(self.device)
        model.apply_freeze(config.freeze)
        model.check_labels(self.task_labels)
        return model

    def _tokenize(self, collator: Collator, split: str) -> dict[str, TokenizedSplit]:
        return {
            name: tokenize_split(collator, getattr(task, split))
            for name, task in self.tasks.items()
            if getattr(task, split) is not None
        }

    def _build_optimizer(self, warmup_steps: int) -> None:
        config = self.config
        params = parameter_groups(
            self.model,
            self.weighting,
            encoder_lr=config.encoder_lr,
            head_lr=config.head_lr,
            layer_decay=config.layer_decay,
            weight_decay=config.weight_decay,
        )
        if not params:
            raise InvalidInputError(f"--freeze {config.freeze!r} leaves nothing to train")
        self.optimizer = torch.optim.AdamW(params, fused=self.device.type == "cuda")
        self.trained_parameters = [p for group in params for p in group["params"]]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_schedule(warmup_steps, self.total_steps)
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str = "dev") -> evaluation.Scores:
        """Accuracy, macro-F1, per-class report and confusion matrix for every task with that split."""
        datasets = self.dev_data if split == "dev" else self.test_data
        return evaluation.evaluate(self.inputs, datasets, self.task_labels, split, self.dist)

    @property
    def resume_parts(self) -> ResumeParts:
        """Everything besides the model and counters that ``last/`` keeps (see training.checkpoint)."""
        return ResumeParts(
            self.optimizer, self.scheduler, self.scaler, self.weighting, self.sampler, self.streams
        )

    # ------------------------------------------------------------------ training step
    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimiser step over ``grad_accumulation`` single-task batches; returns losses per task.

        Under DDP every rank draws the same task and global batch (same seeds), trains on its shard
        (:func:`distributed.shard_batch`), and the ranks agree on skipping the step and on stopping.
        """
        losses: dict[str, list[torch.Tensor]] = {}
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        for _ in range(self.config.grad_accumulation):
            task = self.sampler.next_task()
            rows = next(self.streams[task])
            data = self.train_data[task]
            share = None
            if self.ddp is not None:
                rows, share = distributed.shard_batch(
                    rows, data.labels, self.loss.class_weights[task], self.dist.rank, self.dist.world_size
                )
            labels = data.labels[torch.from_numpy(rows)].to(self.device, non_blocking=True)
            loss = (self.ddp or self.objective)(self.inputs("train", task, data, rows), task, labels)
            finite &= torch.isfinite(loss)
            scaled = loss if share is None else loss * share
            self.scaler.scale(scaled / self.config.grad_accumulation).backward()
            losses.setdefault(task, []).append(loss.detach())
            self.state.micro_step += 1
        if self._all_finite(finite):
            if self.config.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.trained_parameters, self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self._skip_step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state.step += 1
        return {task: torch.stack(values).mean() for task, values in losses.items()}

    def _all_finite(self, finite: torch.Tensor) -> bool:
        """The step's one host sync; under DDP the ranks also agree on a stop signal here."""
        if not self.dist.enabled:
            return bool(finite)
        bad, signal_number = distributed.all_reduce_max(
            [int(not bool(finite)), self.stop.signal or 0], self.dist
        )
        self._agreed_stop = signal_number or None
        return not bad

    def _skip_step(self) -> None:
        self.state.bad_steps += 1
        logger.warning(
            "step %d: non-finite loss, update skipped (%d so far)", self.state.step, self.state.bad_steps
        )
        if self.state.bad_steps >= self.config.max_bad_steps:
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDivergedError(
                f"{self.state.bad_steps} steps had a NaN/inf loss; stopped. The last good checkpoint in "
                f"{self.output_dir} is intact: lower --encoder-lr/--head-lr or use --amp fp32, then --resume"
            )

    # ------------------------------------------------------------------ checkpoints
    def save_best(self) -> None:
        """The model alone, atomically (rank 0 only under DDP)."""
        if self.dist.is_main:
            self.folder.before_checkpoint()
            checkpoint.save_best(self.model, self.output_dir / "best")

    def save_last(self) -> None:
        """Everything :meth:`load_last` needs to continue exactly (rank 0 only under DDP).

        After each step every rank holds the same weights and state, so one copy serves them all.
        """
        if self.dist.is_main:
            self.folder.before_checkpoint()
            parts, labels = self.resume_parts, self.task_labels
            checkpoint.save_last(self.output_dir / "last", self.model, parts, self.state, self.config, labels)

    def load_last(self, folder: Path) -> None:
        """Restore a ``last/`` checkpoint written by :meth:`save_last` (the model weights included).

        A missing, truncated or foreign file is a :class:`CheckpointError` that names it.
        """
        self.state = checkpoint.load_last(
            folder, self.model, self.resume_parts, self.task_labels, self.config.trust_remote_code
        )

    # ------------------------------------------------------------------ the loop
    def request_stop(self, signum: int) -> None:
        """Finish the current step, save ``last/`` and stop, as SIGINT/SIGTERM do."""
        self.stop.request(signum)

    def _stop_requested(self) -> int | None:
        """The signal to stop on; under DDP the one all ranks agreed on in the last step's all-reduce."""
        return self._agreed_stop if self.dist.enabled else self.stop.signal

    def _evaluate_and_checkpoint(self) -> bool:
        """Dev evaluation, best/last checkpoints, early stopping. Returns True to stop.

        On the contrastive path the heads are first solved on the encoder as it is now; an
        ``--init-from`` model at step 0 is evaluated as it came.
        """
        if self.method == "contrastive" and self.state.step > 0:
            self._solve_heads()
        dev = self.evaluate("dev")
        objective = self.config.objective
        score, record = evaluation.dev_record(dev, self.selection_task_names, self.state, objective)
        improved = record["improved"]
        self.state.history.append(record)
        self.folder.log(record)
        text = evaluation.selection_text(dev, self.selection_task_names, score, objective)
        logger.info("step %d: %s%s", self.state.step, text, " (best)" * improved)
        if improved:
            self.state.best_score, self.state.best_step = score, self.state.step
            self.state.evals_without_improvement = 0
            self.save_best()
        else:
            self.state.evals_without_improvement += 1
        self.save_last()
        patience = self.config.patience
        return patience is not None and self.state.evals_without_improvement >= patience

    def _log_losses(self, running: dict[str, torch.Tensor], counts: dict[str, int]) -> dict[str, float]:
        means = {task: float(total) / counts[task] for task, total in running.items()}
        if self.dist.enabled:  # the mean over ranks; every rank trained the same tasks
            names = sorted(means)
            means = dict(
                zip(names, distributed.all_reduce_mean([means[n] for n in names], self.dist), strict=True)
            )
        self.folder.log(
            {
                "event": "train",
                "step": self.state.step,
                "lr": self.scheduler.get_last_lr()[0],
                "loss": means,
                "task_weights": self.weighting.weights(),
            }
        )
        return means

    def fit(self, show_progress: bool = True) -> dict[str, Any]:
        """Train to ``total_steps`` (or early stop), then evaluate the best checkpoint on dev and test.

        SIGINT/SIGTERM are caught from here to the end: the loop saves ``last/`` and stops, and a
        signal during the final evaluation lets it finish.
        """
        if self.dist.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        start_step = self.state.step
        with self.stop.listening():
            stopped_early = self._train(show_progress)
            return self.final_report(stopped_early, start_step)

    def _train(self, show_progress: bool) -> bool:
        """The loop itself; returns whether patience stopped it early."""
        progress = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            desc="train",
            unit="step",
            disable=not (show_progress and self.dist.is_main),
        )
        running: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        self.model.train()
        if self.state.step == 0 and self.config.init_from:
            # The starting model is a candidate too, and step 0 anchors the curves (e.g. forgetting).
            self._evaluate_and_checkpoint()
        if self.convex and self.state.step == 0:
            started = time.perf_counter()
            self._solve_heads()
            self.state.step = 1
            self.state.train_seconds += time.perf_counter() - started
            progress.update(1)
            progress.close()
            self._evaluate_and_checkpoint()
            return False
        started = time.perf_counter()
        while self.state.step < self.total_steps:
            for task, loss in self.train_step().items():
                running[task] = running.get(task, torch.zeros((), device=self.device)) + loss
                counts[task] = counts.get(task, 0) + 1
            progress.update(1)
            step = self.state.step
            if step % self.config.log_every == 0 or step == self.total_steps:
                means = self._log_losses(running, counts)
                progress.set_postfix({f"{task}_loss": f"{value:.3f}" for task, value in means.items()})
                running, counts = {}, {}
            if step % self.eval_every == 0 or step == self.total_steps:
                self.state.train_seconds += time.perf_counter() - started
                stopped_early = self._evaluate_and_checkpoint()
                started = time.perf_counter()
                if stopped_early:
                    progress.close()
                    return True
            if self._stop_requested() is not None:
                self.state.train_seconds += time.perf_counter() - started
                progress.close()
                self._stop_for_signal()
        progress.close()
        return False

    def _solve_heads(self) -> None:
        """Each training task's linear head solved exactly on the encoder's embeddings (training.convex).

        The frozen path's one step, and the contrastive path's last, at every evaluation.
        """
        if not self.cached:
            self.inputs.clear()  # the encoder has trained since the embeddings were computed
        class_counts = {task: len(self.tasks[task].labels) for task in self.train_task_names}
        config = self.config
        solutions = solve_heads(
            self.inputs, self.train_data, self.dev_data, class_counts, config.objective, config.balanced
        )
        for task, solution in solutions.items():
            self.model.set_linear_head(
                task, torch.from_numpy(solution.weight), torch.from_numpy(solution.bias)
            )
            record = {"event": "solve", "step": self.state.step, "task": task, "C": solution.C}
            record["dev_score"] = solution.dev_score
            self.folder.log(record)
            self.state.history.append(record)

    def _stop_for_signal(self) -> None:
        self.save_last()
        distributed.barrier(self.dist)  # no rank exits while rank 0 still writes
        raise TrainingInterrupted(
            f"stopped by signal {self._stop_requested()} at step {self.state.step}; "
            f"resume with --resume {self.output_dir}"
        )

    def final_report(self, stopped_early: bool, start_step: int) -> dict[str, Any]:
        """Load the best checkpoint, evaluate it on dev and test, write ``metrics.json``."""
        evaluation.load_best(self.model, self.output_dir / "best", self.config.trust_remote_code, self.dist)
        splits = {"train": self.train_data, "dev": self.dev_data, "test": self.test_data}
        metrics = evaluation.final_scores(self.inputs, splits, self.task_labels, self.dist)
        metrics.update(self._run_record(stopped_early, start_step))
        if self.dist.is_main:
            self.folder.before_checkpoint()
            evaluation.write_report(self.output_dir, metrics)
        return metrics

    def _run_record(self, stopped_early: bool, start_step: int) -> dict[str, Any]:
        """What ``metrics.json`` records of the run besides its scores."""
        return {
            "best_step": self.state.best_step,
            "best_dev_score": self.state.best_score,
            "steps": self.state.step,
            "resumed_from_step": start_step or None,
            "stopped_early": stopped_early,
            "skipped_steps": self.state.bad_steps,
            "train_seconds": round(self.state.train_seconds, 2),
            "embeddings_cached": self.cached,
            "method": "convex" if self.convex else self.method,
            "amp": self.amp,
            "world_size": self.dist.world_size,
            "parameters": self.model.parameter_report(),
            "task_weights": self.weighting.weights(),
            "sampling_probabilities": self.sampler.probabilities(),
            "dev_split_carved": {name: task.dev_carved for name, task in self.tasks.items()},
            "config": asdict(self.config),
            "hardware": hardware_description(self.device),
            "history": self.state.history,
        }
