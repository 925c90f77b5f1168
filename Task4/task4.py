r"""Task 4: train the multi-task model — task-sampled batches, weighted losses, metrics, checkpoints.

With no --task it trains on the built-in demo data (6 topics × 3 sentiments) in a few minutes on CPU.
DATA is a folder of task folders, e.g. the one `python bench/build_data.py "$DATA"` builds (docs/data.md).

    python Task4/task4.py                                              # demo data, default settings
    python Task4/task4.py --max-steps 5 --output-dir runs/smoke --overwrite
    python Task4/task4.py --task topic="$DATA/trec" --task sentiment="$DATA/sst" \
        --output-dir runs/trec_sst
    python Task4/task4.py --task topic="$DATA/trec" --task sentiment="$DATA/sst" \
        --freeze encoder                                             # frozen encoder: heads solved exactly
    python Task4/task4.py --task intent=my_intents                     # 8 labels per class: contrastive
    python Task4/task4.py --resume runs/trec_sst                       # continue an interrupted run
    python Task4/task4.py --task topic="$DATA/trec" --task sentiment="$DATA/sst" \
        --init-from runs/trec_sst/best --freeze head:topic --train-tasks sentiment \
        --output-dir runs/sentiment_only                               # continue one task (Task 3)
    python Task2/task2.py --checkpoint runs/trec_sst/best              # predictions of the best model
    torchrun --nproc_per_node=4 Task4/task4.py --task topic="$DATA/trec" \
        --task sentiment="$DATA/sst" --output-dir runs/ddp      # DDP, one process per GPU

With up to 64 labelled rows per class in every task (and no --freeze encoder or --head mlp), the
encoder trains on pairs built from the labels and the heads are then solved exactly (SetFit's recipe),
each class also training on 8 copies of "This sentence is {label}." when its label names are words,
and no dev rows are carved from train; with more, encoder and heads are fine-tuned together.
--method contrastive | finetune chooses for you (sentence_mtl/training/method.py).

Files in OUTPUT_DIR: best/ (MultiTaskModel.save folder), last/ (resumable), metrics.json, log.jsonl.
SIGINT/SIGTERM (Ctrl-C, a scheduler's pre-emption) writes last/ and exits with 130; --resume continues
(with no other flag but --device). One run at a time per OUTPUT_DIR; --overwrite replaces an earlier
run only once the new one writes its first checkpoint.
Under torchrun, --batch-size is the global batch and only rank 0 prints and writes (RELIABILITY.md).
"""

from __future__ import annotations

import signal
import sys


def exit_interrupted_before_training(_signum: int = signal.SIGINT, _frame: object = None) -> None:
    print("interrupted before training started; nothing was written", file=sys.stderr)
    sys.exit(130)


# Ctrl-C while the libraries below load gives one line, not a traceback from inside an import.
signal.signal(signal.SIGINT, exit_interrupted_before_training)

import argparse
import logging
from pathlib import Path

from transformers.utils import logging as transformers_logging

from sentence_mtl import SentenceMTLError
from sentence_mtl.errors import InvalidInputError, TrainingInterrupted
from sentence_mtl.training import AMP_MODES, CLASS_WEIGHTS, TrainingConfig, load_saved_config, train
from sentence_mtl.training.config import FROZEN_SOLVERS, METHODS, OBJECTIVES
from sentence_mtl.training.distributed import is_main_process
from sentence_mtl.training.method import load_run_tasks
from sentence_mtl.training.sampling import SAMPLING_STRATEGIES
from sentence_mtl.training.weighting import LOSS_WEIGHTINGS

DEFAULTS = TrainingConfig()
# --resume continues the saved configuration; only where it runs may change.
RESUME_MAY_CHANGE = ("resume", "device")
FLAG_NAMES = {"tasks": "--task", "group_by_length": "--no-group-by-length"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_and_model_flags(parser)
    add_training_flags(parser)
    return parser.parse_args(argv)


def add_data_and_model_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--task",
        dest="tasks",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="repeatable; default: demo",
    )
    data.add_argument(
        "--dev-fraction",
        type=float,
        default=0.1,
        help="dev share carved from train when a task has no dev file and over 64 labelled rows per class",
    )
    data.add_argument(
        "--train-tasks",
        nargs="+",
        default=None,
        metavar="NAME",
        help="tasks that get training batches; the other --task sets are only evaluated (default: all)",
    )
    data.add_argument(
        "--select-on",
        nargs="+",
        default=None,
        metavar="NAME",
        help="tasks whose dev scores pick the best checkpoint and stop early, e.g. the target task "
        "when the others are auxiliary (default: all)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULTS.model, help="default: packaged all-MiniLM-L6-v2")
    model.add_argument(
        "--init-from",
        default=None,
        metavar="DIR",
        help="start from a trained MultiTaskModel folder (a run's best/); its encoder and heads "
        "replace --model/--head/--hidden/--dropout",
    )
    model.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run modelling code shipped with the model; off by default because it runs with your "
        "permissions. stella_en_1.5B_v5 needs it (its own bidirectional Qwen2 code)",
    )
    model.add_argument("--max-length", type=int, default=DEFAULTS.max_length)
    model.add_argument("--head", choices=("linear", "mlp"), default=DEFAULTS.head)
    model.add_argument("--dropout", type=float, default=DEFAULTS.dropout)
    model.add_argument("--hidden", type=int, default=DEFAULTS.hidden, help="mlp head width")
    model.add_argument(
        "--freeze", default=DEFAULTS.freeze, help="none | encoder | top:K | head:NAME, joined by +"
    )
    model.add_argument(
        "--method",
        choices=METHODS,
        default=DEFAULTS.method,
        help="how the encoder trains: finetune (cross-entropy with the heads), contrastive (pairs from "
        "the labels, then heads solved exactly), or auto: contrastive when every training task has "
        "few labels per class (sentence_mtl/training/method.py has the rule)",
    )
    model.add_argument(
        "--label-sentences",
        type=int,
        default=DEFAULTS.label_sentences,
        help='on the contrastive path, copies of "This sentence is {label}." added to each class\'s '
        "train rows when the label names are words (0: none; sentence_mtl/training/label_sentences.py)",
    )
    model.add_argument(
        "--frozen-solver",
        choices=FROZEN_SOLVERS,
        default=DEFAULTS.frozen_solver,
        help="linear heads on a frozen encoder: solved exactly (convex) or trained by SGD",
    )


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    optim = parser.add_argument_group("optimisation")
    optim.add_argument(
        "--epochs",
        type=float,
        default=DEFAULTS.epochs,
        help="exactly this many epochs (default: fine-tuning 4, but at least --min-steps updates; "
        "the contrastive path 40 at up to 8 labels per class, falling to 10 at 64)",
    )
    optim.add_argument("--max-steps", type=int, default=DEFAULTS.max_steps, help="overrides --epochs")
    optim.add_argument(
        "--min-steps", type=int, default=DEFAULTS.min_steps, help="fewest updates when --epochs is not given"
    )
    optim.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    optim.add_argument("--grad-accumulation", type=int, default=DEFAULTS.grad_accumulation)
    optim.add_argument("--encoder-lr", type=float, default=DEFAULTS.encoder_lr)
    optim.add_argument("--head-lr", type=float, default=DEFAULTS.head_lr)
    optim.add_argument("--layer-decay", type=float, default=DEFAULTS.layer_decay, help="layer-wise LR decay")
    optim.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay)
    optim.add_argument("--warmup-ratio", type=float, default=DEFAULTS.warmup_ratio)
    optim.add_argument("--grad-clip", type=float, default=DEFAULTS.grad_clip)
    optim.add_argument("--amp", choices=AMP_MODES, default=DEFAULTS.amp)
    optim.add_argument(
        "--no-group-by-length",
        dest="group_by_length",
        action="store_false",
        help="random batches instead of length-grouped",
    )
    balance = parser.add_argument_group("task balancing and loss")
    balance.add_argument("--sampling", choices=SAMPLING_STRATEGIES, default=DEFAULTS.sampling)
    balance.add_argument("--temperature", type=float, default=DEFAULTS.temperature)
    balance.add_argument("--loss-weighting", choices=LOSS_WEIGHTINGS, default=DEFAULTS.loss_weighting)
    balance.add_argument("--loss-weights", default=None, help="for static: topic=1,sentiment=0.5")
    balance.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=DEFAULTS.objective,
        help="what the best checkpoint is chosen by; macro_f1 also weights classes (balanced)",
    )
    balance.add_argument(
        "--class-weights",
        choices=CLASS_WEIGHTS,
        default=DEFAULTS.class_weights,
        help="override the objective's class weighting",
    )
    balance.add_argument("--label-smoothing", type=float, default=DEFAULTS.label_smoothing)
    run = parser.add_argument_group("run")
    run.add_argument("--output-dir", default=DEFAULTS.output_dir)
    run.add_argument("--overwrite", action="store_true", help="replace an existing run in --output-dir")
    run.add_argument("--resume", metavar="OUTPUT_DIR", default=None, help="continue the run saved there")
    run.add_argument(
        "--eval-every", type=int, default=DEFAULTS.eval_every, help="steps (default: each epoch)"
    )
    run.add_argument(
        "--patience", type=int, default=DEFAULTS.patience, help="evals without gain before stopping"
    )
    run.add_argument("--seed", type=int, default=DEFAULTS.seed)
    run.add_argument("--device", default=DEFAULTS.device)
    run.add_argument("--log-every", type=int, default=DEFAULTS.log_every)


def flags_that_change_a_resumed_run(args: argparse.Namespace) -> list[str]:
    defaults = vars(parse_args([]))
    return [
        FLAG_NAMES.get(name, f"--{name.replace('_', '-')}")
        for name, value in vars(args).items()
        if name not in RESUME_MAY_CHANGE and value != defaults[name]
    ]


def refuse_flags_that_do_nothing(args: argparse.Namespace) -> None:
    """A flag the run would ignore is refused, so nothing the user typed is silently dropped.

    --init-from brings its own encoder and heads, so --model, --head, --hidden and --dropout
    (given a value other than the default) would be ignored. --frozen-solver picks how linear heads
    on a frozen encoder are solved, so without --freeze encoder, or with --head mlp, it does nothing.
    """
    defaults = vars(parse_args([]))
    if args.init_from:
        ignored = [
            f"--{flag}"
            for flag in ("model", "head", "hidden", "dropout")
            if getattr(args, flag) != defaults[flag]
        ]
        if ignored:
            raise InvalidInputError(
                f"--init-from brings its own encoder and heads, so {', '.join(ignored)} would be ignored; "
                f"drop {', '.join(ignored)}"
            )
    if args.frozen_solver != defaults["frozen_solver"]:
        frozen_encoder = "encoder" in (part.strip() for part in args.freeze.split("+"))
        if not frozen_encoder or args.head == "mlp":
            reason = (
                "--head mlp trains its heads by SGD anyway" if frozen_encoder else "the encoder is not frozen"
            )
            raise InvalidInputError(
                f"--frozen-solver picks how linear heads on a frozen encoder are trained, but {reason}, so "
                "it would do nothing; add --freeze encoder (with linear heads) or drop --frozen-solver"
            )


def print_table(metrics: dict) -> None:
    if not metrics["dev"]:
        print(
            "\nno dev split (no dev file, and none carved: --dev-fraction 0, or too few labels per class "
            "to spare any): the last step's model is kept"
        )
    for split in ("dev", "test"):
        if not metrics.get(split):
            continue
        print(f"\n{split:<5} {'task':<12} {'accuracy':>9} {'macro-F1':>9}   majority baseline (acc / F1)")
        for task, result in metrics[split].items():
            baseline = metrics["baseline"][split][task]
            print(
                f"      {task:<12} {100 * result['accuracy']:9.2f} {100 * result['macro_f1']:9.2f}"
                f"   {100 * baseline['accuracy']:.2f} / {100 * baseline['macro_f1']:.2f}"
                f" ({baseline['label']})"
            )


def main() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, caught below
    args = parse_args()
    main_process = is_main_process()  # under torchrun only rank 0 prints and logs
    logging.basicConfig(
        level=logging.INFO if main_process else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("sentence_mtl.encoder.sentence_encoder").setLevel(logging.WARNING)
    transformers_logging.disable_progress_bar()

    # 1. Config: from the flags, or from the checkpoint being resumed.
    if args.resume:
        changing = flags_that_change_a_resumed_run(args)
        if changing:
            raise InvalidInputError(
                f"--resume continues the saved configuration; remove {', '.join(changing)} "
                "(only --device may be given with it)"
            )
        config = load_saved_config(args.resume, device=args.device)
    else:
        refuse_flags_that_do_nothing(args)
        config = TrainingConfig.from_dict(vars(args))  # each flag's dest is the field it sets

    # 2. Data: --task NAME=DIR folders, or the built-in demo data; a few decoded samples.
    tasks = load_run_tasks(config)
    for task in tasks if main_process else []:
        sizes = ", ".join(
            f"{split} {len(getattr(task, split))}"
            for split in ("train", "dev", "test")
            if getattr(task, split) is not None
        )
        print(
            f"task {task.name}: {len(task.labels)} labels {task.labels}; {sizes}"
            + (" (dev carved from train)" if task.dev_carved else "")
        )
        for text, label in list(zip(task.train.texts, task.train.labels, strict=True))[:2]:
            print(f"  e.g. {text[:70]!r} → {task.labels[label]}")

    # 3. Train, evaluate the best checkpoint, report.
    metrics = train(config, tasks, overwrite=args.overwrite, resume=args.resume is not None)
    if not main_process:
        return
    print_table(metrics)
    output_dir = Path(config.output_dir)
    print(
        f"\nbest step {metrics['best_step']} of {metrics['steps']}, "
        f"{metrics['train_seconds']:.0f} s training "
        f"({metrics['hardware']}, amp {metrics['amp']}, cached embeddings: {metrics['embeddings_cached']})"
    )
    print(
        f"wrote {output_dir / 'metrics.json'}, {output_dir / 'log.jsonl'}, {output_dir / 'best'}, "
        f"{output_dir / 'last'}"
    )


if __name__ == "__main__":
    try:
        main()
    except TrainingInterrupted as error:
        print(f"interrupted: {error}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:  # before the loop took over the signals: data or model loading
        exit_interrupted_before_training()
    except SentenceMTLError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
