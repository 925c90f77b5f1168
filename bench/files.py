"""Benchmark: prediction over files as a user runs it, a fresh process per run.

Writes a text file of N sentences (the texts of ../shared/data, repeated in order), runs
``Task2/task2.py --checkpoint C --input FILE --output FILE`` (and ``Task1/task1.py --file FILE
--output vectors.npy``) on it, and reports sentences/s and the process's peak RSS, read from the
kernel's accounting of that one child (``os.wait4``). Memory bounded by the chunk means the same
peak for 100 k and 1 M sentences.

    python bench/files.py --checkpoint runs/trec_sst/best
    python bench/files.py --checkpoint runs/trec_sst/best --sizes 1000000 --runtimes int8 --scripts task2
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sentence_mtl.devices import hardware_description

from encode import DATA, corpus

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = {"torch": [], "onnx": ["--backend", "onnx"], "int8": ["--backend", "onnx", "--quantize", "int8"]}
SUMMARY = re.compile(r"wrote ([\d,]+) rows? to .* \(([\d,.]+) sentences/s\)")


def write_sentences(path: Path, sentences: list[str], count: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(sentences[index % len(sentences)].replace("\n", " ") + "\n")


def run(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB of this one child, and its summary line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        text = out.read() + err.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{text[-3000:]}")
    match = SUMMARY.search(text)
    return seconds, usage.ru_maxrss / 1024, match.group(0) if match else text.strip()[-200:]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="a MultiTaskModel folder (Task 4)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--scripts", nargs="+", choices=("task2", "task1"), default=["task2", "task1"])
    args = parser.parse_args()

    sentences = corpus("all", args.data)
    print(f"hardware: {hardware_description(torch.device('cpu'))}")
    print(f"{len(sentences):,} unique sentences of {args.data}, repeated to each size\n")
    print("| script | sentences | runtime | wall s | sentences/s (script's own count) | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            source = Path(scratch) / f"sentences_{size}.txt"
            write_sentences(source, sentences, size)
            for script in args.scripts:
                for runtime in args.runtimes:
                    if script == "task2":
                        output = Path(scratch) / "predictions.tsv"
                        command = ["Task2/task2.py", "--checkpoint", str(args.checkpoint), "--input"]
                        command += [str(source), "--output", str(output)]
                    else:
                        output = Path(scratch) / "vectors.npy"
                        command = ["Task1/task1.py", "--file", str(source), "--output", str(output)]
                    command = [sys.executable, *command, "--device", "cpu", *RUNTIMES[runtime]]
                    seconds, peak, summary = run(command)
                    rate = SUMMARY.search(summary)
                    print(
                        f"| {script} | {size:,} | {runtime} | {seconds:.0f} | "
                        f"{rate.group(2) if rate else summary} | {peak:,.0f} |",
                        flush=True,
                    )
                    output.unlink()


if __name__ == "__main__":
    main()
