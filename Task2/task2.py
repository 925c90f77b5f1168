"""Task 2: one shared sentence encoder, one classification head per task (topic and sentiment).

Prints the architecture, the tensor shapes flowing from the encoder into each head, the parameter
counts, and predictions for a few sentences. Without --checkpoint the heads are freshly
initialised, so their predictions are random; train them with Task4/task4.py and pass the folder
it saves to see real ones.

Copy and paste, from the repository root:

    python Task2/task2.py                                   # all-MiniLM-L6-v2 + untrained linear heads
    python Task2/task2.py --head mlp --seed 1
    python Task2/task2.py --tasks topic=business,sports sentiment=neg,pos --sentences "What a match!"
    python Task2/task2.py --checkpoint OUTPUT_DIR/best      # a model saved by Task 4: real predictions
    python Task2/task2.py --model BAAI/bge-small-en-v1.5 --device cuda   # any hub model (needs network)

Classify every row of a file (.txt, or .tsv/.csv/.jsonl with a text column) with a saved model:

    python Task2/task2.py --checkpoint OUTPUT_DIR/best --input texts.tsv --output predictions.tsv
    python Task2/task2.py --checkpoint OUTPUT_DIR/best --input texts.jsonl --output out.jsonl --distribution
    python Task2/task2.py --checkpoint OUTPUT_DIR/best --input big.csv --output out.csv --skip-bad
    python Task2/task2.py --checkpoint DIR --input big.txt --output out.tsv --backend onnx --quantize int8
    cat texts.txt | python Task2/task2.py --checkpoint OUTPUT_DIR/best --input - --output - > out.tsv
"""

from __future__ import annotations

from sentence_mtl.errors import exit_on_stop_signals, run_script

# Ctrl-C or SIGTERM from here on, while the libraries below load too, is one line and leaves no temporary.
exit_on_stop_signals()

import argparse
import sys
from typing import TextIO

import torch
from transformers.utils import logging as transformers_logging

from sentence_mtl.data.demo import DEMO_TASK_LABELS
from sentence_mtl.encoder.model_files import DEFAULT_MODEL_NAME
from sentence_mtl.encoder.onnx_export import QUANTIZATIONS
from sentence_mtl.encoder.runtimes import BACKENDS, default_device
from sentence_mtl.errors import InvalidInputError
from sentence_mtl.files.prediction import DEFAULT_CHUNK_SIZE, check_chunk_size, open_files
from sentence_mtl.files.reading import INPUT_FORMATS
from sentence_mtl.files.writing import PREDICTION_FORMATS
from sentence_mtl.model.heads import HEAD_TYPES
from sentence_mtl.model.multitask import MultiTaskModel, build_model
from sentence_mtl.model.tasks import TaskSpec

# ---------------------------------------------------------------------- defaults
DEFAULT_TASKS = {"topic": DEMO_TASK_LABELS["topic"], "sentiment": ["negative", "neutral", "positive"]}
DEFAULT_HEAD = "linear"
DEFAULT_SEED = 0
DEFAULT_BATCH_SIZE = 32
SAMPLE_SENTENCES = [
    "The striker scored twice in the final minutes of the match.",
    "Shares of the chip maker fell after a weak quarterly forecast.",
    "This ramen was the best meal I have had all year!",
    "The new phone's battery drains far too quickly.",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help=f"encoder folder or hub name (default: {DEFAULT_MODEL_NAME})")
    parser.add_argument("--head", choices=HEAD_TYPES, help=f"head type (default: {DEFAULT_HEAD})")
    default_tasks = " ".join(f"{name}={','.join(labels)}" for name, labels in DEFAULT_TASKS.items())
    parser.add_argument(
        "--tasks", nargs="+", metavar="NAME=LABEL,LABEL", help=f"tasks and labels (default: {default_tasks})"
    )
    parser.add_argument("--sentences", nargs="+", help="sentences to classify (default: a few samples)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"sentences per forward pass (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument("--checkpoint", help="folder from MultiTaskModel.save, e.g. Task 4's OUTPUT_DIR/best")
    parser.add_argument(
        "--device", help="cpu, cuda or cuda:N (default: cuda when available; cpu with --backend onnx)"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="runtime of the encoder (onnx: ONNX Runtime, on the CPU)",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default=None,
        help="int8: dynamic quantisation (with --backend onnx)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run modelling code shipped with the model; off by default because it runs with your "
        "permissions. stella_en_1.5B_v5 needs it (its own bidirectional Qwen2 code)",
    )
    parser.add_argument("--seed", type=int, help=f"seed of the untrained heads (default: {DEFAULT_SEED})")
    files = parser.add_argument_group("file mode", "classify every row of a file with a saved model")
    files.add_argument(
        "--input", metavar="FILE|-", help=".txt, or .tsv/.csv/.jsonl with a text column; - reads stdin"
    )
    files.add_argument("--output", metavar="FILE|-", help=".tsv, .csv or .jsonl; - writes TSV to stdout")
    files.add_argument("--input-format", choices=INPUT_FORMATS, help="default: --input's suffix, txt for -")
    files.add_argument("--output-format", choices=PREDICTION_FORMATS, help="default: --output's suffix")
    files.add_argument("--distribution", action="store_true", help="add each label's probability")
    files.add_argument(
        "--skip-bad", action="store_true", help="leave out bad rows and list them, instead of stopping"
    )
    files.add_argument(
        "--chunk-size", type=int, help=f"rows read and classified at a time (default: {DEFAULT_CHUNK_SIZE})"
    )
    return parser.parse_args()


def is_file_mode(args: argparse.Namespace) -> bool:
    """True when --input and --output ask to classify a file; refuses half of that, or it without a model."""
    if (args.input is None) != (args.output is None):
        raise InvalidInputError("--input and --output go together; pass both (a file path or - for each)")
    file_flags = ("input_format", "output_format", "distribution", "skip_bad", "chunk_size")
    if args.input is None:
        stray = [flag for flag in file_flags if getattr(args, flag) not in (None, False)]
        if stray:
            flags = ", ".join(f"--{flag.replace('_', '-')}" for flag in stray)
            raise InvalidInputError(
                f"without --input and --output there is no file to classify, so {flags} would do nothing; "
                f"add --input FILE --output FILE or drop {flags}"
            )
        return False
    if not args.checkpoint:
        raise InvalidInputError(
            "--input needs --checkpoint: untrained heads would label the file at random; pass a folder "
            "saved by Task 4, such as OUTPUT_DIR/best"
        )
    if args.sentences:
        raise InvalidInputError("--sentences and --input are alternatives; pass one of them")
    if args.chunk_size is not None:
        check_chunk_size(args.chunk_size)
    return True


def parse_tasks(words: list[str]) -> list[TaskSpec]:
    """``NAME=LABEL,LABEL,...`` words → TaskSpecs (the package checks the names and labels)."""
    tasks = []
    for word in words:
        name, equals, labels = word.partition("=")
        if not equals or not labels:
            raise InvalidInputError(
                f"--tasks {word!r} is not NAME=LABEL,LABEL,... (as in sentiment=negative,neutral,positive)"
            )
        tasks.append(TaskSpec(name, [label.strip() for label in labels.split(",")]))
    return tasks


def print_architecture(model: MultiTaskModel) -> None:
    """The encoder's parts, then one branch per head with its layers and labels."""
    facts = model.describe()
    encoder_facts = facts["encoder"]

    print(f"MultiTaskModel: {facts['head']} heads on {encoder_facts['model']} ({encoder_facts['device']})")
    print(
        f"├─ backbone    {encoder_facts['backbone']}, {encoder_facts['layers']} layers, "
        f"hidden {encoder_facts['hidden_size']}"
    )
    print(f"├─ pooling     {encoder_facts['pooling']}")
    print(f"├─ projection  {encoder_facts['projection']}")
    print(f"├─ normalize   {'L2' if encoder_facts['normalize'] else 'no'}")
    print(f"└─ embedding   {encoder_facts['embedding_dim']} dims, shared by every head")
    width = max(len(name) for name in facts["tasks"])
    for index, (name, head) in enumerate(facts["tasks"].items()):
        branch = "└─" if index == len(facts["tasks"]) - 1 else "├─"
        print(
            f"   {branch} {name:<{width}}  {' → '.join(head['layers'])}  "
            f"→ {head['out_features']} logits: {', '.join(head['labels'])}"
        )


def print_shapes_and_parameters(model: MultiTaskModel, sentences: list[str]) -> None:
    """One encoder pass feeding every head, with the tensor shapes, then who owns how many parameters."""
    batch = model.collator()(sentences)
    with torch.inference_mode():
        embeddings = model.embed(batch)
        logits = model.classify(embeddings)
    print(f"\nShapes: one encoder pass for {len(sentences)} sentences, then every head")
    print(f"  input_ids {tuple(batch['input_ids'].shape)} → encoder → embeddings {tuple(embeddings.shape)}")
    for name, values in logits.items():
        print(f"  embeddings {tuple(embeddings.shape)} → heads[{name!r}] → logits {tuple(values.shape)}")

    report = model.parameter_report()
    rows = [("shared encoder", report["shared"])]
    rows += [(f"head {name}", counts) for name, counts in report["heads"].items()]
    rows.append(("total", report["total"]))
    print(f"\nParameters  {'':<20}{'trainable':>12}{'frozen':>12}")
    for label, counts in rows:
        print(f"  {label:<30}{counts['trainable']:>12,}{counts['frozen']:>12,}")


def build(args: argparse.Namespace) -> MultiTaskModel:
    """The model the flags ask for: a saved one (--checkpoint), or an encoder with untrained heads."""
    if args.checkpoint:
        clashing = [flag for flag in ("model", "head", "tasks", "seed") if getattr(args, flag) is not None]
        if clashing:
            raise InvalidInputError(
                f"--checkpoint brings its own encoder, heads and tasks; drop --{', --'.join(clashing)}"
            )
    tasks = parse_tasks(args.tasks) if args.tasks else [TaskSpec(n, v) for n, v in DEFAULT_TASKS.items()]
    model = build_model(
        tasks,
        args.model or DEFAULT_MODEL_NAME,
        init_from=args.checkpoint,
        head=args.head or DEFAULT_HEAD,
        trust_remote_code=args.trust_remote_code,
        device=default_device(args.device, args.backend),
        seed=DEFAULT_SEED if args.seed is None else args.seed,
    )
    return model.eval()


def classify_file(args: argparse.Namespace) -> None:
    """File mode: both files are opened and checked first, then the model loads and the rows stream."""
    with open_files(
        args.input, args.output, input_format=args.input_format, output_format=args.output_format
    ) as files:
        report = files.predict(
            build(args),
            chunk_size=DEFAULT_CHUNK_SIZE if args.chunk_size is None else args.chunk_size,
            skip_bad=args.skip_bad,
            distribution=args.distribution,
            batch_size=args.batch_size,
            backend=args.backend,
            quantize=args.quantize,
        )
    summary_stream: TextIO = sys.stderr if files.output.to_stdout else sys.stdout
    print(report.summary(), file=summary_stream)


def main() -> int:
    args = parse_args()
    transformers_logging.disable_progress_bar()
    if is_file_mode(args):
        classify_file(args)
        return 0
    model = build(args)
    sentences = args.sentences or SAMPLE_SENTENCES
    print_architecture(model)
    print_shapes_and_parameters(model, sentences)

    # ------------------------------------------------------------------ predictions
    if args.checkpoint:
        print(f"\nPredictions (trained heads from {args.checkpoint})")
    else:
        print("\nPredictions from UNTRAINED heads: their weights are random, so these labels mean nothing.")
        print("Train with Task4/task4.py and pass --checkpoint OUTPUT_DIR/best for real predictions.")
    for sentence, prediction in zip(
        sentences,
        model.predict(sentences, batch_size=args.batch_size, backend=args.backend, quantize=args.quantize),
        strict=True,
    ):
        print(f"  {sentence}")
        guesses = (f"{task}: {top['label']} ({top['probability']:.2f})" for task, top in prediction.items())
        print("    " + "   ".join(guesses))
    return 0


if __name__ == "__main__":
    run_script(main)
