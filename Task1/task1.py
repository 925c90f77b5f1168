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

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from transformers.utils import logging as transformers_logging

from sentence_mtl import SentenceEncoder, SentenceMTLError
from sentence_mtl.analysis.similarity import cosine_matrix, nearest_neighbours, read_sts_pairs, sts_spearman
from sentence_mtl.encoder.onnx_export import QUANTIZATIONS
from sentence_mtl.encoder.pooling import POOLING_MODES
from sentence_mtl.encoder.runtimes import BACKENDS
from sentence_mtl.errors import InvalidInputError
from sentence_mtl.files.prediction import DEFAULT_CHUNK_SIZE, encode_file
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
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="runtime of the backbone (onnx: ONNX Runtime, CPU)",
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
        help="a text file with one sentence per line, or - for stdin; with --output also a .tsv, .csv or "
        ".jsonl file with a text column",
    )
    parser.add_argument("--stsb", default=None, help="STS-B style TSV (sentence1, sentence2, score) to score")
    files = parser.add_argument_group("file mode", "embed every row of --file into an .npy file")
    files.add_argument("--output", default=None, metavar="VECTORS.npy", help="where to write the vectors")
    files.add_argument(
        "--input-format", choices=INPUT_FORMATS, help="format of --file (default: its suffix, txt for -)"
    )
    files.add_argument(
        "--skip-bad", action="store_true", help="leave out bad rows and list them, instead of stopping"
    )
    files.add_argument(
        "--chunk-size", type=int, help=f"rows read and embedded at a time (default: {DEFAULT_CHUNK_SIZE})"
    )
    return parser.parse_args()


def is_file_mode(args: argparse.Namespace) -> bool:
    """True when --output asks to stream --file into an .npy; the file-mode flags need both."""
    if args.output is None:
        file_flags = ("input_format", "skip_bad", "chunk_size")
        stray = [flag for flag in file_flags if getattr(args, flag) not in (None, False)]
        if stray:
            flags = ", ".join(f"--{flag.replace('_', '-')}" for flag in stray)
            raise InvalidInputError(
                f"without --output there is no file to stream, so {flags} would do nothing; add "
                f"--output VECTORS.npy or drop {flags}"
            )
        return False
    if args.file is None:
        raise InvalidInputError(
            "--output writes the vectors of --file's rows; pass --file FILE (or - for stdin)"
        )
    return True


def read_sentences(args: argparse.Namespace) -> list[str]:
    if args.sentences:
        return args.sentences
    if args.file:
        try:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SentenceMTLError(f"cannot read sentences from {args.file}: {error}") from error
        return [line.strip() for line in text.splitlines() if line.strip()]
    return SAMPLE_SENTENCES


def score_stsb(encoder: SentenceEncoder, args: argparse.Namespace) -> None:
    """Spearman correlation with the gold scores of --stsb, when given."""
    if args.stsb:
        first, second, scores = read_sts_pairs(args.stsb)
        spearman = sts_spearman(
            encoder, first, second, scores, args.batch_size, args.precision, args.backend, args.quantize
        )
        print(f"\nSTS ({args.stsb}, {len(scores)} pairs): Spearman ×100 = {spearman:.2f}")


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    transformers_logging.disable_progress_bar()
    file_mode = is_file_mode(args)

    # 1. Build the encoder.
    encoder = SentenceEncoder.from_pretrained(
        args.model,
        pooling=args.pooling,
        projection_dim=args.projection_dim,
        normalize=False if args.no_normalize else None,
        max_length=args.max_length,
        prompt=args.prompt,
        trust_remote_code=args.trust_remote_code,
        device=args.device,
    )
    # 2a. File mode: stream every row of --file into the .npy, report, and skip the printouts below.
    if file_mode:
        report = encode_file(
            encoder,
            args.file,
            args.output,
            chunk_size=DEFAULT_CHUNK_SIZE if args.chunk_size is None else args.chunk_size,
            skip_bad=args.skip_bad,
            input_format=args.input_format,
            batch_size=args.batch_size,
            precision=args.precision,
            backend=args.backend,
            quantize=args.quantize,
        )
        print(report.summary())
        score_stsb(encoder, args)
        return
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
    sentences = read_sentences(args)
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
    try:
        main()
    except SentenceMTLError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
