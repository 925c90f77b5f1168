"""Benchmark: SentenceEncoder.encode vs SentenceTransformer.encode on the same model, data and device.

Runs both in one process, interleaved, and reports the median of several repeats, plus padding
overhead, STS-B dev Spearman, and the fraction of the machine's measured matmul peak.

    python bench/encode.py                                  # CPU, fp32, batch 32 and 128
    python bench/encode.py --precision bf16                 # ours in bf16 vs ST in fp32
    python bench/encode.py --device cuda --corpus all --batch-sizes 256 1024 --precision fp16
    python bench/encode.py --large 100000                   # memory of a 100k-sentence encode
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers.utils import logging as transformers_logging

from sentence_mtl import SentenceEncoder
from sentence_mtl.analysis.similarity import read_sts_pairs, spearman_of_embeddings, sts_spearman
from sentence_mtl.devices import resolve_device
from sentence_mtl.encoder.model_files import packaged_model_path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def corpus(name: str, data: Path) -> list[str]:
    """Unique sentences: STS-B dev, or every text in the shared data (TREC, SST, STS-B)."""
    first, second, _ = read_sts_pairs(data / "stsb" / "dev.tsv")
    sentences = set(first) | set(second)
    if name == "all":
        for path in sorted(data.glob("*/*.tsv")):
            lines = path.read_text(encoding="utf-8").splitlines()
            header = lines[0].split("\t")
            columns = [header.index(c) for c in ("text", "sentence1", "sentence2") if c in header]
            sentences.update(line.split("\t")[c] for line in lines[1:] for c in columns)
    return sorted(sentences)


def timed(function) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def padding_ratio(encoder: SentenceEncoder, sentences: list[str], batch_size: int, by_tokens: bool) -> float:
    """Padded tokens per real token when sorting by token count (ours) or by characters (ST)."""
    lengths = encoder.tokenizer.token_ids(sentences).lengths
    keys = -lengths if by_tokens else -np.array([len(s) for s in sentences])
    ordered = lengths[np.argsort(keys, kind="stable")]
    padded = sum(
        ordered[i : i + batch_size].max() * len(ordered[i : i + batch_size])
        for i in range(0, len(ordered), batch_size)
    )
    return padded / lengths.sum()


def useful_flops(encoder: SentenceEncoder, sentences: list[str]) -> float:
    """FLOPs of the transformer on real tokens only: 2·params·tokens for the matmuls plus attention."""
    lengths = encoder.tokenizer.token_ids(sentences).lengths.astype(np.float64)
    config = encoder.backbone.config
    matmul_params = sum(
        p.numel()
        for n, p in encoder.backbone.named_parameters()
        if p.dim() == 2 and "embeddings" not in n and "pooler" not in n
    )
    attention = 4 * config.num_hidden_layers * config.hidden_size * (lengths**2).sum()
    return 2 * matmul_params * lengths.sum() + attention


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    seconds = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model folder (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--corpus", choices=("stsb", "all"), default="stsb")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--st-precision", choices=("fp32", "fp16"), default="fp32", help="cast ST's model")
    parser.add_argument("--large", type=int, default=0, help="also encode this many sentences, report memory")
    args = parser.parse_args()
    transformers_logging.disable_progress_bar()

    device = resolve_device(args.device)
    sentences = corpus(args.corpus, args.data)
    ours = SentenceEncoder.from_pretrained(args.model, device=device)
    model_path = args.model or str(packaged_model_path())
    theirs = SentenceTransformer(model_path, device=str(device))
    if args.st_precision == "fp16":
        theirs.half()
    if device.type == "cuda":
        accelerator = torch.cuda.get_device_name(device)
    else:
        accelerator = f"CPU {torch.backends.cpu.get_cpu_capability()}"
    print(f"hardware: {platform.machine()}, {torch.get_num_threads()} threads, {accelerator}")
    print(
        f"torch {torch.__version__}; {len(sentences)} sentences ({args.corpus}); device {device}; "
        f"ours {args.precision}, ST {args.st_precision}"
    )

    print("\n| batch | ST sent/s | ours sent/s | speed-up | padding ST | padding ours |")
    print("|---|---|---|---|---|---|")
    for batch_size in args.batch_sizes:
        ours.encode(sentences[:256], batch_size=batch_size, precision=args.precision)
        theirs.encode(sentences[:256], batch_size=batch_size)
        st_times, our_times = [], []
        for _ in range(args.repeats):
            st_times.append(timed(lambda: theirs.encode(sentences, batch_size=batch_size)))  # noqa: B023
            our_times.append(
                timed(
                    lambda: ours.encode(
                        sentences,
                        batch_size=batch_size,  # noqa: B023
                        precision=args.precision,
                    )
                )
            )
        st_rate = len(sentences) / statistics.median(st_times)
        our_rate = len(sentences) / statistics.median(our_times)
        print(
            f"| {batch_size} | {st_rate:,.0f} | {our_rate:,.0f} | {our_rate / st_rate:.2f}× | "
            f"{padding_ratio(ours, sentences, batch_size, by_tokens=False):.2f} | "
            f"{padding_ratio(ours, sentences, batch_size, by_tokens=True):.2f} |"
        )
        if batch_size == args.batch_sizes[0]:
            flops = useful_flops(ours, sentences)
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
            peak = matmul_peak(device, dtype)
            achieved = flops / statistics.median(our_times)
            efficiency = (
                f"useful {achieved / 1e9:.1f} GFLOP/s of a measured {args.precision} matmul peak "
                f"of {peak / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.0f}%"
            )

    print(f"\nbatch {args.batch_sizes[0]}: {efficiency}")
    first, second, scores = read_sts_pairs(args.data / "stsb" / "dev.tsv")
    spearman = sts_spearman(ours, first, second, scores, batch_size=64, precision=args.precision)
    st_spearman = spearman_of_embeddings(
        lambda texts: theirs.encode(texts, batch_size=64), first, second, scores
    )
    print(
        f"STS-B dev Spearman ×100: ours ({args.precision}) {spearman:.2f}, "
        f"ST ({args.st_precision}) {st_spearman:.2f}"
    )

    if args.large:
        repeated = [f"{sentences[i % len(sentences)]} #{i}" for i in range(args.large)]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        seconds = timed(
            lambda: ours.encode(repeated, batch_size=args.batch_sizes[0], precision=args.precision)
        )
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        output_mb = args.large * ours.embedding_dim * 4 / 2**20
        print(
            f"\n{args.large:,} sentences in {seconds:.0f} s; peak RSS grew {after - before:.0f} MiB "
            f"for a {output_mb:.0f} MiB output"
        )


if __name__ == "__main__":
    main()
