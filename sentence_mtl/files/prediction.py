"""Prediction over files: stream a text file through an encoder or a multi-task model, chunk by chunk.

Only one chunk of texts and its results are in memory at a time, so a file of any length fits, and
the output keeps the input's order. A bad row (see :mod:`sentence_mtl.files.reading`) stops the run
with its line number, and no output file is left behind, unless ``skip_bad`` is set: then it is
left out of the output and listed in the :class:`FileReport`, so nothing is dropped silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sentence_mtl.encoder.sentence_encoder import SentenceEncoder
from sentence_mtl.errors import DataError, InvalidInputError
from sentence_mtl.files.reading import STDOUT_NAME, TextRowReader, count_data_rows, is_standard_stream
from sentence_mtl.files.writing import embedding_output, prediction_output
from sentence_mtl.model.multitask import MultiTaskModel

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 8192


@dataclass(frozen=True)
class SkippedRow:
    """A bad row left out of the output: its 1-based line number and what was wrong with it."""

    line: int
    problem: str


@dataclass
class FileReport:
    """What a file run did: rows written, bad rows skipped, and how long it took."""

    source: str
    destination: str
    rows_written: int
    skipped: list[SkippedRow] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def sentences_per_second(self) -> float:
        """Rows written per second of the whole run, reading and writing included."""
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0

    def summary(self, max_skipped: int = 20) -> str:
        """A few lines for a person: rows written, time, throughput, and the first skipped rows."""
        lines = [
            f"wrote {_rows(self.rows_written)} to {self.destination} in {self.seconds:.2f} s "
            f"({self.sentences_per_second:,.1f} sentences/s)"
        ]
        if self.skipped:
            lines.append(f"skipped {_rows(len(self.skipped), 'bad ')} of {self.source}:")
            lines += [f"  line {row.line}: {row.problem}" for row in self.skipped[:max_skipped]]
            if len(self.skipped) > max_skipped:
                lines.append(f"  … and {len(self.skipped) - max_skipped:,} more")
        return "\n".join(lines)


def _rows(count: int, kind: str = "") -> str:
    return f"{count:,} {kind}{'row' if count == 1 else 'rows'}"


def encode_file(
    encoder: SentenceEncoder,
    source: str | Path,
    destination: str | Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    skip_bad: bool = False,
    input_format: str | None = None,
    show_progress_bar: bool | None = None,
    **encode_options: Any,
) -> FileReport:
    """Embed every text of ``source`` into the ``.npy`` file ``destination``, one row per good input row.

    ``encode_options`` (``batch_size``, ``precision``, ...) go to :meth:`SentenceEncoder.encode`
    unchanged. The file loads with ``np.load(destination, mmap_mode="r")``, so neither writing nor
    reading it needs all the vectors in memory. ``show_progress_bar=None`` shows the bar only when
    stderr is a terminal.
    """
    _check_chunk_size(chunk_size)
    started = time.perf_counter()
    with (
        TextRowReader(source, input_format) as reader,
        embedding_output(destination, encoder.embedding_dim) as output,
    ):

        def embed(texts: list[str]) -> None:
            """One chunk's vectors go straight to the file, so only one chunk is ever in memory."""
            vectors = encoder.encode(texts, convert_to="numpy", show_progress_bar=False, **encode_options)
            output.append(vectors)

        progress = _progress_bar(source, input_format, "encode", show_progress_bar)
        skipped = _stream(reader, chunk_size, skip_bad, progress, embed)
    return _report(reader.name, destination, output.rows_written, skipped, started)


def predict_file(
    model: MultiTaskModel,
    source: str | Path,
    destination: str | Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    skip_bad: bool = False,
    distribution: bool = False,
    input_format: str | None = None,
    output_format: str | None = None,
    show_progress_bar: bool | None = None,
    **predict_options: Any,
) -> FileReport:
    """Classify every text of ``source`` for every task; write the rows, in input order, to ``destination``.

    The output format is ``output_format``, else the suffix of ``destination`` (tsv, csv, jsonl);
    ``-`` writes TSV to standard output. ``distribution`` adds each label's probability.
    ``predict_options`` (``batch_size``, ...) go to :meth:`MultiTaskModel.predict` unchanged.
    """
    _check_chunk_size(chunk_size)
    started = time.perf_counter()
    with (
        TextRowReader(source, input_format) as reader,
        prediction_output(
            destination, model.tasks, distribution=distribution, output_format=output_format
        ) as output,
    ):

        def classify(texts: list[str]) -> None:
            """One chunk's predictions, written at once in the chunk's order."""
            output.write(texts, model.predict(texts, return_distribution=distribution, **predict_options))

        progress = _progress_bar(source, input_format, "predict", show_progress_bar)
        skipped = _stream(reader, chunk_size, skip_bad, progress, classify)
    return _report(reader.name, destination, output.rows_written, skipped, started)


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidInputError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def _progress_bar(source: str | Path, input_format: str | None, description: str, show: bool | None) -> tqdm:
    """A bar in sentences per second; its total is the file's row count, unknown for standard input."""
    total = count_data_rows(source, input_format)
    return tqdm(total=total, desc=description, unit="sent", disable=None if show is None else not show)


def _stream(
    reader: TextRowReader,
    chunk_size: int,
    skip_bad: bool,
    progress: tqdm,
    handle_chunk: Callable[[list[str]], None],
) -> list[SkippedRow]:
    """Hand each chunk of good texts to ``handle_chunk``; return the bad rows that were skipped."""
    skipped: list[SkippedRow] = []
    try:
        for texts, consumed in _chunks(reader, chunk_size, skip_bad, skipped):
            if texts:
                handle_chunk(texts)
            progress.update(consumed)
    finally:
        progress.close()
    if skipped:
        logger.info("skipped %d bad rows of %s", len(skipped), reader.name)
    return skipped


def _chunks(
    reader: TextRowReader, chunk_size: int, skip_bad: bool, skipped: list[SkippedRow]
) -> Iterator[tuple[list[str], int]]:
    """Chunks of up to ``chunk_size`` good texts, each with how many rows, bad ones too, it consumed."""
    texts: list[str] = []
    consumed = 0
    for row in reader:
        consumed += 1
        if row.problem is not None:
            if not skip_bad:
                raise DataError(
                    f"{reader.name}, line {row.line}: {row.problem}; fix the row or pass --skip-bad "
                    "(skip_bad=True) to leave it out"
                )
            skipped.append(SkippedRow(row.line, row.problem))
            continue
        texts.append(row.text)
        if len(texts) == chunk_size:
            yield texts, consumed
            texts, consumed = [], 0
    if consumed:
        yield texts, consumed


def _report(
    source_name: str, destination: str | Path, rows_written: int, skipped: list[SkippedRow], started: float
) -> FileReport:
    seconds = time.perf_counter() - started
    target = STDOUT_NAME if is_standard_stream(destination) else str(destination)
    report = FileReport(source_name, target, rows_written, skipped, seconds)
    logger.info("%s", report.summary())
    return report
