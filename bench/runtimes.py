"""Benchmark: every inference runtime of ours against every CPU backend of sentence-transformers.

One process, the same sentences (STS-B dev, unique), the same batch sizes; each configuration is
timed in turn within every repeat, and the median is reported. ST's backends are built here by
ST's own code (``backend="onnx"``, ``export_optimized_onnx_model``,
``export_dynamic_quantized_onnx_model``, ``backend="openvino"``), so every ratio is measured.
A row counts as exact when its vectors have a cosine of at least 0.99999 with ST's torch vectors
for every sentence.

ST's ONNX and OpenVINO backends need optimum, which pins transformers below 4.58; run this in an
environment that has them (README, "Inference runtimes"):

    pip install torch==2.13.0 "transformers<4.58" "sentence-transformers[onnx,openvino]<6" -e .
    python bench/runtimes.py
    python bench/runtimes.py --batch-sizes 32 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging as transformers_logging

from sentence_mtl import SentenceEncoder
from sentence_mtl.analysis.similarity import min_cosine, read_sts_pairs, spearman_of_embeddings
from sentence_mtl.encoder.model_files import packaged_model_path

from encode import DATA, corpus, timed

EXACT_COSINE = 0.99999


@dataclass
class Runtime:
    """One configuration: who runs it, its name, and ``encode(sentences, batch_size) → vectors``."""

    library: str
    name: str
    encode: Callable[[list[str], int], np.ndarray]
    int8: bool = False
    seconds: dict[int, list[float]] = field(default_factory=dict)


def sentence_transformers_runtimes(model_dir: Path) -> list[Runtime]:
    """ST's CPU backends on a copy of the model folder (the exports are written into it)."""
    from sentence_transformers import (
        SentenceTransformer,
        export_dynamic_quantized_onnx_model,
        export_optimized_onnx_model,
    )

    def encoder(model: SentenceTransformer) -> Callable[[list[str], int], np.ndarray]:
        return lambda sentences, batch_size: model.encode(sentences, batch_size=batch_size)

    folder = str(model_dir)
    onnx = SentenceTransformer(folder, backend="onnx", device="cpu")
    export_optimized_onnx_model(onnx, "O3", folder)
    runtimes = [
        Runtime("ST", "torch", encoder(SentenceTransformer(folder, device="cpu"))),
        Runtime("ST", "ONNX Runtime fp32", encoder(onnx)),
        Runtime("ST", "ONNX Runtime O3", encoder(_onnx_file(folder, "onnx/model_O3.onnx"))),
    ]
    for config in ("avx2", "avx512_vnni"):
        export_dynamic_quantized_onnx_model(onnx, config, folder)
        exported = next(Path(folder, "onnx").glob(f"model_*int8_{config}.onnx"))  # quint8 for avx2
        model = _onnx_file(folder, f"onnx/{exported.name}")
        runtimes.append(Runtime("ST", f"ONNX Runtime int8 ({config})", encoder(model), int8=True))
    for hint in ("f32", None):
        kwargs = {"ov_config": {"INFERENCE_PRECISION_HINT": hint}} if hint else {}
        model = SentenceTransformer(folder, backend="openvino", device="cpu", model_kwargs=kwargs)
        runtimes.append(Runtime("ST", f"OpenVINO ({hint or 'default precision'})", encoder(model)))
    return runtimes


def _onnx_file(folder: str, file_name: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(folder, backend="onnx", device="cpu", model_kwargs={"file_name": file_name})


def our_runtimes(model_dir: Path) -> list[Runtime]:
    encoder = SentenceEncoder.from_pretrained(model_dir, device="cpu")

    def runner(backend: str, quantize: str | None) -> Callable[[list[str], int], np.ndarray]:
        return lambda sentences, batch_size: encoder.encode(
            sentences, batch_size=batch_size, backend=backend, quantize=quantize
        )

    return [
        Runtime("ours", "torch", runner("torch", None)),
        Runtime("ours", "ONNX Runtime fp32", runner("onnx", None)),
        Runtime("ours", "ONNX Runtime int8", runner("onnx", "int8"), int8=True),
    ]


def sts_spearman(runtime: Runtime, data: Path) -> float:
    first, second, scores = read_sts_pairs(data / "stsb" / "dev.tsv")
    return spearman_of_embeddings(lambda texts: runtime.encode(texts, 64), first, second, scores)


def best(runtimes: list[Runtime], batch_size: int) -> Runtime:
    return min(runtimes, key=lambda runtime: statistics.median(runtime.seconds[batch_size]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: packaged MiniLM)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    transformers_logging.disable_progress_bar()

    sentences = corpus("stsb", args.data)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(shutil.copytree(args.model or packaged_model_path(), Path(scratch) / "model"))
        runtimes = sentence_transformers_runtimes(model_dir) + our_runtimes(model_dir)
        reference = runtimes[0].encode(sentences, 64)
        exact = {id(r): min_cosine(r.encode(sentences, 64), reference) for r in runtimes}
        for batch_size in args.batch_sizes:
            for runtime in runtimes:
                runtime.encode(sentences[:256], batch_size)  # warm-up: sessions, allocators
            for _ in range(args.repeats):
                for runtime in runtimes:
                    seconds = timed(lambda r=runtime: r.encode(sentences, batch_size))  # noqa: B023
                    runtime.seconds.setdefault(batch_size, []).append(seconds)
        spearman = {id(r): sts_spearman(r, args.data) for r in runtimes}

    import sentence_transformers
    import transformers

    print(
        f"hardware: {platform.machine()} CPU {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} threads; torch {torch.__version__}, transformers "
        f"{transformers.__version__}, sentence-transformers {sentence_transformers.__version__}"
    )
    print(f"{len(sentences)} sentences (STS-B dev, unique); median of {args.repeats}\n")
    header = " | ".join(f"batch {b} sent/s | × ST torch" for b in args.batch_sizes)
    print(f"| library | runtime | {header} | min cosine vs ST torch | STS-B dev Spearman |")
    print("|---|---|" + "---|---|" * len(args.batch_sizes) + "---|---|")
    for runtime in runtimes:
        cells = []
        for batch_size in args.batch_sizes:
            rate = len(sentences) / statistics.median(runtime.seconds[batch_size])
            base = len(sentences) / statistics.median(runtimes[0].seconds[batch_size])
            cells.append(f"{rate:,.0f} | {rate / base:.2f}×")
        print(
            f"| {runtime.library} | {runtime.name} | {' | '.join(cells)} | "
            f"{exact[id(runtime)]:.6f} | {spearman[id(runtime)]:.2f} |"
        )

    print()
    for label, int8 in (("best exact (fp32)", False), ("best int8", True)):
        for batch_size in args.batch_sizes:
            pick = {
                library: best(
                    [
                        r
                        for r in runtimes
                        if r.library == library and r.int8 == int8 and (int8 or exact[id(r)] >= EXACT_COSINE)
                    ],
                    batch_size,
                )
                for library in ("ours", "ST")
            }
            ratio = statistics.median(pick["ST"].seconds[batch_size]) / statistics.median(
                pick["ours"].seconds[batch_size]
            )
            print(
                f"batch {batch_size}, {label}: ours {pick['ours'].name} is {ratio:.2f}× ST {pick['ST'].name}"
            )


if __name__ == "__main__":
    main()
