"""Task 1: a sentence encoder — transformer → pooling → optional projection → optional L2 normalise.

Loads the packaged all-MiniLM-L6-v2 offline by default, embeds some sentences, and shows what the
vectors look like: shape, norms, first values, cosine similarities and nearest neighbours. DATA is a
folder of benchmark sets, e.g. the one `python bench/build_data.py "$DATA"` builds (docs/data.md).

    python Task1/task1.py
    python Task1/task1.py --sentences "A cat sat on the mat." "A kitten rested on a rug." "Stocks fell."
    echo "one sentence per line" | python Task1/task1.py --file -
    python Task1/task1.py --file texts.tsv --output vectors.npy    # stream a file's text column to .npy
    python Task1/task1.py --file big.jsonl --output vectors.npy --skip-bad --chunk-size 4096
    cat texts.txt | python Task1/task1.py --file - --output vectors.npy
    python Task1/task1.py --pooling max --no-normalize            # design choices
    python Task1/task1.py --projection-dim 128                    # new (untrained) projection
    python Task1/task1.py --stsb "$DATA/stsb/dev.tsv"             # STS-B Spearman (86.72 for MiniLM)
    python Task1/task1.py --stsb "$DATA/stsb/dev.tsv" --precision bf16
    python Task1/task1.py --stsb "$DATA/stsb/dev.tsv" --backend onnx --quantize int8
    python Task1/task1.py --model BAAI/bge-large-en-v1.5          # needs the Hugging Face Hub
    python Task1/task1.py --model NovaSearch/stella_en_1.5B_v5 --trust-remote-code --prompt s2s_query
"""

from __future__ import annotations

from sentence_mtl.errors import exit_on_stop_signals, run_script

# Ctrl-C or SIGTERM from here on, while the libraries below load too, is one line and leaves no temporary.
exit_on_stop_signals()

import argparse
import logging

import numpy as np
from transformers.utils import logging as transformers_logging

from sentence_mtl.analysis.similarity import cosine_matrix, nearest_neighbours, read_sts_pairs, sts_spearman
from sentence_mtl.encoder.onnx_export import QUANTIZATIONS
from sentence_mtl.encoder.pooling import POOLING_MODES
from sentence_mtl.encoder.runtimes import BACKENDS, default_device
from sentence_mtl.encoder.sentence_encoder import SentenceEncoder
from sentence_mtl.errors import InvalidInputError
from sentence_mtl.files.prediction import (
    DEFAULT_CHUNK_SIZE,
    check_chunk_size,
    open_files,
    read_texts,
    skipped_lines,
)
from sentence_mtl.files.reading import INPUT_FORMATS

SAMPLE_SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar.",
    "The central bank raised interest rates again.",
    "Borrowing costs went up after the bank's decision.",
    "The recipe needs two cups of flour and an egg.",
    "It rained all weekend, so the match was cancelled.",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="folder or hub name (default: packaged all-MiniLM-L6-v2)"
    )
    parser.add_argument("--pooling", choices=POOLING_MODES, default=None, help="override the model's pooling")
    parser.add_argument(
        "--projection-dim", type=int, default=None, help="add a projection to this size (0: none)"
    )
    parser.add_argument("--no-normalize", action="store_true", help="skip L2 normalisation")
    parser.add_argument(
        "--prompt", default=None, help="a prompt name of the model (s2s_query) or literal text"
    )
    parser.add_argument("--max-length", type=int, default=None, help="truncate texts to this many tokens")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:1 (default: cuda if available; cpu with --backend onnx)",
    )
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="runtime of the backbone (onnx: ONNX Runtime, on the CPU)",
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
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--sentences", nargs="+", default=None, help="sentences to embed")
    source.add_argument(
        "--file",
        default=None,
        help="a .txt file with one sentence per line (- for stdin), or a .tsv, .csv or .jsonl file with a "
        "text column",
    )
    parser.add_argument("--stsb", default=None, help="STS-B style TSV (sentence1, sentence2, score) to score")
    parser.add_argument(
        "--input-format", choices=INPUT_FORMATS, help="format of --file (default: its suffix, txt for -)"
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out bad rows of --file and list them, instead of stopping",
    )
    files = parser.add_argument_group("file mode", "embed every row of --file into an .npy file")
    files.add_argument("--output", default=None, metavar="VECTORS.npy", help="where to write the vectors")
    files.add_argument(
        "--chunk-size", type=int, help=f"rows read and embedded at a time (default: {DEFAULT_CHUNK_SIZE})"
    )
    return parser.parse_args()


def is_file_mode(args: argparse.Namespace) -> bool:
    """True when --output asks to stream --file into an .npy; refuses flags that would do nothing."""
    stray = [flag for flag in ("input_format", "skip_bad") if args.file is None and getattr(args, flag)]
    if stray:
        flags = ", ".join(f"--{flag.replace('_', '-')}" for flag in stray)
        raise InvalidInputError(
            f"without --file there is no file to read, so {flags} would do nothing; add --file FILE or "
            f"drop {flags}"
        )
    if args.output is None:
        if args.chunk_size is not None:
            raise InvalidInputError(
                "without --output there is no file to stream, so --chunk-size would do nothing; add "
                "--output VECTORS.npy or drop --chunk-size"
            )
        return False
    if args.file is None:
        raise InvalidInputError(
            "--output writes the vectors of --file's rows; pass --file FILE (or - for stdin)"
        )
    if args.chunk_size is not None:
        check_chunk_size(args.chunk_size)
    return True


def read_sentences(args: argparse.Namespace) -> list[str]:
    """--sentences, the texts of --file (read as file mode reads them), or the samples."""
    if args.sentences:
        return args.sentences
    if args.file:
        texts, skipped = read_texts(args.file, args.input_format, args.skip_bad)
        for line in skipped_lines(args.file, skipped):
            print(line)
        return texts
    return SAMPLE_SENTENCES


def score_stsb(encoder: SentenceEncoder, args: argparse.Namespace) -> None:
    """Spearman correlation with the gold scores of --stsb, when given."""
    if args.stsb:
        first, second, scores = read_sts_pairs(args.stsb)
        spearman = sts_spearman(
            encoder, first, second, scores, args.batch_size, args.precision, args.backend, args.quantize
        )
        print(f"\nSTS ({args.stsb}, {len(scores)} pairs): Spearman ×100 = {spearman:.2f}")


def load_encoder(args: argparse.Namespace) -> SentenceEncoder:
    """The encoder the flags describe; on the CPU for the ONNX backend unless --device says otherwise."""
    return SentenceEncoder.from_pretrained(
        args.model,
        pooling=args.pooling,
        projection_dim=args.projection_dim,
        normalize=False if args.no_normalize else None,
        max_length=args.max_length,
        prompt=args.prompt,
        trust_remote_code=args.trust_remote_code,
        device=default_device(args.device, args.backend),
    )


def embed_file(args: argparse.Namespace) -> None:
    """File mode: both files are opened and checked first, then the encoder loads and the rows stream."""
    with open_files(args.file, args.output, input_format=args.input_format, embeddings=True) as files:
        encoder = load_encoder(args)
        report = files.encode(
            encoder,
            chunk_size=DEFAULT_CHUNK_SIZE if args.chunk_size is None else args.chunk_size,
            skip_bad=args.skip_bad,
            batch_size=args.batch_size,
            precision=args.precision,
            backend=args.backend,
            quantize=args.quantize,
        )
    print(report.summary())
    score_stsb(encoder, args)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    transformers_logging.disable_progress_bar()
    # File mode: stream every row of --file into the .npy, report, and skip the printouts below.
    if is_file_mode(args):
        embed_file(args)
        return

    # 1. Read the sentences (a bad --file fails before the model loads), then build the encoder.
    sentences = read_sentences(args)
    encoder = load_encoder(args)
    print("Model")
    for key, value in encoder.describe().items():
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        elif isinstance(value, list):
            value = ", ".join(value) or "none"
        elif isinstance(value, str):
            value = (repr(value) if "\n" in value else value) or "none"
        print(f"  {key:<15} {value}")
    if args.projection_dim:
        print("  note: a new projection is randomly initialised; train it before trusting its vectors")

    # 2. Embed the sentences.
    embeddings = encoder.encode(
        sentences,
        batch_size=args.batch_size,
        precision=args.precision,
        backend=args.backend,
        quantize=args.quantize,
    )
    print(f"\nEmbeddings: shape {embeddings.shape}, dtype {embeddings.dtype}")
    for index, (sentence, vector) in enumerate(zip(sentences, embeddings, strict=True)):
        first = " ".join(f"{value:+.4f}" for value in vector[:5])
        print(f"  [{index}] norm {np.linalg.norm(vector):.4f}  [{first} …]  {sentence[:60]}")

    # 3. Compare them.
    similarity = cosine_matrix(embeddings)
    if len(sentences) <= 12:
        print("\nCosine similarity")
        print("      " + " ".join(f"[{j}]".rjust(6) for j in range(len(sentences))))
        for i, row in enumerate(similarity):
            print(f"  [{i}] " + " ".join(f"{value:6.3f}" for value in row))
    if len(sentences) > 1:
        print("\nNearest neighbour")
        for i, j in enumerate(nearest_neighbours(similarity)):
            print(f"  [{i}] → [{j}] {similarity[i, j]:.3f}  {sentences[i][:45]!r} ~ {sentences[j][:45]!r}")

    # 4. Optional: score semantic similarity on STS-B.
    score_stsb(encoder, args)


if __name__ == "__main__":
    run_script(main)
