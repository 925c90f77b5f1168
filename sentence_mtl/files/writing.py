"""Predictions and embeddings out: TSV, CSV or JSONL rows, and ``.npy`` vectors, appended chunk by chunk.

The writers write to an :class:`~sentence_mtl.files.destination.Output`, which decides how the bytes
reach the path (a temporary file renamed into place when complete, or a stream written as rows
come) and turns a failed write into an error that names the output.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sentence_mtl.errors import InvalidInputError
from sentence_mtl.files.destination import Output
from sentence_mtl.files.reading import TEXT_COLUMN, format_of
from sentence_mtl.model.tasks import TaskSpec

PREDICTION_FORMATS = ("tsv", "csv", "jsonl")
_TSV_UNSAFE = str.maketrans({"\t": " ", "\n": " ", "\r": " "})
_EMBEDDING_DTYPE = np.dtype("<f4")


def prediction_format_of(
    destination: str | Path, output_format: str | None = None, is_stream: bool = False
) -> str:
    """The format to write predictions in: the one given, else the suffix; ``-`` defaults to ``tsv``.

    So does a pipe or device whose name has no format suffix (``/dev/fd/63`` of ``>(cmd)``).
    """
    return format_of(destination, output_format, PREDICTION_FORMATS, "tsv", "output", is_stream)


def prediction_columns(tasks: Sequence[TaskSpec], distribution: bool = False) -> list[str]:
    """``text``, then per task ``TASK`` and ``TASK_probability`` (and ``TASK_p_LABEL`` per label)."""
    columns = [TEXT_COLUMN]
    for task in tasks:
        columns += [task.name, f"{task.name}_probability"]
        if distribution:
            columns += [f"{task.name}_p_{label}" for label in task.labels]
    repeated = sorted({column for column in columns if columns.count(column) > 1})
    if repeated:
        raise InvalidInputError(
            f"the prediction columns would repeat {', '.join(repeated)}; rename the task or label that "
            "makes them clash"
        )
    return columns


class PredictionWriter:
    """Writes one row per text: the text, then per task the label, its probability and the distribution.

    TSV has no quoting, as the project's TSV reader expects: a tab or line break (``\\t``, ``\\n``,
    ``\\r``) inside a value is written as a space, so each row stays one line with the header's
    field count. CSV quotes what needs it. A JSONL line nests each task's prediction the way
    :meth:`MultiTaskModel.predict` returns it: ``{"text": ..., TASK: {"label", "probability", ...}}``.
    """

    def __init__(
        self, output: Output, output_format: str, tasks: Sequence[TaskSpec], distribution: bool = False
    ) -> None:
        self._output = output
        self._handle = output.handle
        self._format = output_format
        self._tasks = list(tasks)
        self._distribution = distribution
        self._csv = csv.writer(self._handle, lineterminator="\n") if output_format == "csv" else None
        self.rows_written = 0
        columns = prediction_columns(self._tasks, distribution)
        if output_format != "jsonl":
            with output.writing():
                self._write_fields(columns)

    def write(self, texts: Sequence[str], predictions: Sequence[Mapping[str, Mapping[str, Any]]]) -> None:
        """Append one row per text, in the order given."""
        with self._output.writing():
            for text, prediction in zip(texts, predictions, strict=True):
                if self._format == "jsonl":
                    record = {TEXT_COLUMN: text, **{task.name: prediction[task.name] for task in self._tasks}}
                    self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                else:
                    self._write_fields(self._fields(text, prediction))
        self.rows_written += len(texts)

    def _fields(self, text: str, prediction: Mapping[str, Mapping[str, Any]]) -> list[object]:
        fields: list[object] = [text]
        for task in self._tasks:
            result = prediction[task.name]
            fields += [result["label"], result["probability"]]
            if self._distribution:
                fields += [result["distribution"][label] for label in task.labels]
        return fields

    def _write_fields(self, fields: Sequence[object]) -> None:
        if self._csv is not None:
            self._csv.writerow(fields)
        else:
            self._handle.write("\t".join(str(field).translate(_TSV_UNSAFE) for field in fields) + "\n")


class EmbeddingWriter:
    """Appends float32 rows to an ``.npy`` file, then rewrites its header with the final row count.

    numpy pads a version 1.0 header so that its first axis can grow to 21 digits without changing
    the header's size. That is what lets rows be streamed: write the header for ``(0, dim)``,
    append, then overwrite the header in place. The two sizes are compared first, so a numpy that
    pads differently fails loudly instead of shifting the data.
    """

    def __init__(self, output: Output, dim: int) -> None:
        self._output = output
        self._handle = output.handle
        self.dim = dim
        self.rows_written = 0
        header = _npy_header(0, dim)
        self._header_size = len(header)
        with output.writing():
            self._handle.write(header)

    def append(self, vectors: np.ndarray) -> None:
        """Append ``(n, dim)`` vectors as little-endian float32."""
        vectors = np.ascontiguousarray(vectors, dtype=_EMBEDDING_DTYPE)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInputError(
                f"vectors of shape {vectors.shape} do not fit a file of {self.dim}-dimensional rows; "
                f"append arrays of shape (n, {self.dim})"
            )
        with self._output.writing():
            self._handle.write(memoryview(vectors).cast("B"))
        self.rows_written += len(vectors)

    def finish(self) -> None:
        """Rewrite the header with the row count; the file is a valid ``.npy`` only after this."""
        header = _npy_header(self.rows_written, self.dim)
        if len(header) != self._header_size:
            raise RuntimeError(
                f"numpy wrote a {len(header)}-byte .npy header for {self.rows_written} rows but a "
                f"{self._header_size}-byte one for 0 rows, so it cannot be rewritten in place; this numpy "
                "does not pad headers for growth. Use a numpy that does (1.x and 2.x do)"
            )
        with self._output.writing():
            self._handle.seek(0)
            self._handle.write(header)
            self._handle.seek(0, os.SEEK_END)


def _npy_header(rows: int, dim: int) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer,
        {
            "descr": np.lib.format.dtype_to_descr(_EMBEDDING_DTYPE),
            "fortran_order": False,
            "shape": (rows, dim),
        },
    )
    return buffer.getvalue()


def check_npy_name(destination: str | Path) -> None:
    """Embeddings are written as ``.npy``; another suffix is refused before any work."""
    path = Path(destination)
    if path.suffix.lower() != ".npy":
        raise InvalidInputError(f"embeddings are written as .npy; name the output {path.with_suffix('.npy')}")
