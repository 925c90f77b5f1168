"""Prediction over files: stream a text file through an encoder or a multi-task model, chunk by chunk.

Only one chunk of texts and its results are in memory at a time, so a file of any length fits, and
the output keeps the input's order. A bad row (see :mod:`sentence_mtl.files.reading`) stops the run
with its line number, and no output file is left behind, unless ``skip_bad`` is set: then it is
left out of the output and listed in the :class:`FileReport`, so nothing is dropped silently; a
file whose every row is bad is still an error. :func:`open_files` opens and checks both files
before the model loads, so a bad path fails in a second, not after the model has loaded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sentence_mtl.encoder.sentence_encoder import SentenceEncoder
from sentence_mtl.errors import DataError, InvalidInputError
from sentence_mtl.files.destination import Destination, Output
from sentence_mtl.files.reading import TextRowReader, count_data_rows
from sentence_mtl.files.writing import EmbeddingWriter, PredictionWriter, check_npy_name, prediction_format_of
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
        return "\n".join(lines + skipped_lines(self.source, self.skipped, max_skipped))


def skipped_lines(source: str, skipped: list[SkippedRow], max_skipped: int = 20) -> list[str]:
    """For a person: how many bad rows of ``source`` were left out, and the first ones with their lines."""
    if not skipped:
        return []
    lines = [f"skipped {_rows(len(skipped), 'bad ')} of {source}:"]
    lines += [f"  line {row.line}: {row.problem}" for row in skipped[:max_skipped]]
    if len(skipped) > max_skipped:
        lines.append(f"  … and {len(skipped) - max_skipped:,} more")
    return lines


def _rows(count: int, kind: str = "") -> str:
    return f"{count:,} {kind}{'row' if count == 1 else 'rows'}"


class OpenFiles:
    """An input and an output, opened and checked before anything slow (see :func:`open_files`).

    :meth:`predict` or :meth:`encode` then streams the one into the other, one chunk at a time.
    """

    def __init__(self, reader: TextRowReader, output: Output, output_format: str) -> None:
        self.reader = reader
        self.output = output
        self.output_format = output_format

    def predict(
        self,
        model: MultiTaskModel,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        skip_bad: bool = False,
        distribution: bool = False,
        show_progress_bar: bool | None = None,
        **predict_options: Any,
    ) -> FileReport:
        """Classify every text for every task; write the rows in input order (see :func:`predict_file`)."""
        check_chunk_size(chunk_size)
        started = time.perf_counter()
        writer = PredictionWriter(self.output, self.output_format, model.tasks, distribution)

        def classify(texts: list[str]) -> None:
            """One chunk's predictions, written at once in the chunk's order."""
            writer.write(texts, model.predict(texts, return_distribution=distribution, **predict_options))

        skipped = self._stream(chunk_size, skip_bad, "predict", show_progress_bar, classify)
        return self._report(writer.rows_written, skipped, started)

    def encode(
        self,
        encoder: SentenceEncoder,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        skip_bad: bool = False,
        show_progress_bar: bool | None = None,
        **encode_options: Any,
    ) -> FileReport:
        """Embed every text into the ``.npy`` output, one row per good input row (see :func:`encode_file`)."""
        check_chunk_size(chunk_size)
        started = time.perf_counter()
        writer = EmbeddingWriter(self.output, encoder.embedding_dim)

        def embed(texts: list[str]) -> None:
            """One chunk's vectors go straight to the file, so only one chunk is ever in memory."""
            writer.append(
                encoder.encode(texts, convert_to="numpy", show_progress_bar=False, **encode_options)
            )

        skipped = self._stream(chunk_size, skip_bad, "encode", show_progress_bar, embed)
        writer.finish()
        return self._report(writer.rows_written, skipped, started)

    def _stream(
        self,
        chunk_size: int,
        skip_bad: bool,
        description: str,
        show: bool | None,
        handle_chunk: Callable[[list[str]], None],
    ) -> list[SkippedRow]:
        """Hand each chunk of good texts to ``handle_chunk``; return the bad rows that were skipped.

        The progress bar counts sentences per second; its total is the file's row count, unknown
        for standard input.
        """
        total = count_data_rows(self.reader.source, self.reader.format)
        progress = tqdm(
            total=total, desc=description, unit="sent", disable=None if show is None else not show
        )
        skipped: list[SkippedRow] = []
        good = 0
        try:
            for texts, consumed in _chunks(self.reader, chunk_size, skip_bad, skipped):
                if texts:
                    handle_chunk(texts)
                    good += len(texts)
                progress.update(consumed)
        finally:
            progress.close()
        _check_not_all_bad(self.reader.name, good, skipped)
        if skipped:
            logger.info("skipped %d bad rows of %s", len(skipped), self.reader.name)
        return skipped

    def _report(self, rows_written: int, skipped: list[SkippedRow], started: float) -> FileReport:
        seconds = time.perf_counter() - started
        report = FileReport(self.reader.name, self.output.name, rows_written, skipped, seconds)
        logger.info("%s", report.summary())
        return report


@contextmanager
def open_files(
    source: str | Path,
    destination: str | Path,
    *,
    input_format: str | None = None,
    output_format: str | None = None,
    embeddings: bool = False,
) -> Iterator[OpenFiles]:
    """Open ``source`` and ``destination`` now, so every check that needs no model fails first.

    The input's encoding and header, the output's format, kind and folder are checked, and the
    output is opened (see :mod:`sentence_mtl.files.destination`): the scripts load the model inside
    this block. The output is complete when the block ends without an error; otherwise an output
    file is not written and an earlier one keeps its content. ``embeddings`` opens a ``.npy`` file
    for :meth:`OpenFiles.encode`; else predictions in ``output_format`` (default: the suffix).
    """
    with TextRowReader(source, input_format) as reader:
        target = Destination(destination, source)
        if embeddings:
            if not target.is_stream:
                check_npy_name(destination)
            output_format = "npy"
        else:
            output_format = prediction_format_of(destination, output_format, target.is_stream)
        with target.open(binary=embeddings) as output:
            yield OpenFiles(reader, output, output_format)


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
    check_chunk_size(chunk_size)
    with open_files(source, destination, input_format=input_format, embeddings=True) as files:
        return files.encode(
            encoder,
            chunk_size=chunk_size,
            skip_bad=skip_bad,
            show_progress_bar=show_progress_bar,
            **encode_options,
        )


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
    check_chunk_size(chunk_size)
    with open_files(source, destination, input_format=input_format, output_format=output_format) as files:
        return files.predict(
            model,
            chunk_size=chunk_size,
            skip_bad=skip_bad,
            distribution=distribution,
            show_progress_bar=show_progress_bar,
            **predict_options,
        )


def read_texts(
    source: str | Path, input_format: str | None = None, skip_bad: bool = False
) -> tuple[list[str], list[SkippedRow]]:
    """Every good text of ``source`` in memory, for a file small enough to print, and the bad rows skipped.

    Bad rows stop the read or are skipped as in :func:`predict_file`; a file without any text is a
    :class:`DataError`, since there is nothing to show.
    """
    texts: list[str] = []
    skipped: list[SkippedRow] = []
    with TextRowReader(source, input_format) as reader:
        for chunk, _ in _chunks(reader, DEFAULT_CHUNK_SIZE, skip_bad, skipped):
            texts += chunk
    _check_not_all_bad(reader.name, len(texts), skipped)
    if not texts:
        raise DataError(f"{reader.name} holds no texts; give one text per line (blank lines are skipped)")
    return texts, skipped


def check_chunk_size(chunk_size: int) -> None:
    """Refuse a chunk size that is not a positive integer, before any file is opened."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidInputError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def _check_not_all_bad(name: str, good: int, skipped: list[SkippedRow]) -> None:
    """Every row bad (with ``skip_bad``) is an error: most likely the wrong format or encoding, and an
    empty output would hide it. No row at all is no error: an empty file gives an empty output."""
    if skipped and not good:
        first = skipped[0]
        raise DataError(
            f"every row of {name} is bad ({_rows(len(skipped))}; line {first.line}: {first.problem}), so "
            "nothing was written; check the file's format (--input-format) and encoding"
        )


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
