"""Text files in, one row at a time: ``.txt``, ``.tsv``, ``.csv``, ``.jsonl`` or standard input.

A ``.txt`` file holds one text per line; ``.tsv`` and ``.csv`` have a header row with a ``text``
column (other columns are ignored); ``.jsonl`` has one object per line with a ``text`` key; ``-``
is standard input (``txt`` unless a format is given). A file is read as bytes, line by line, and
each line is decoded as UTF-8 on its own, so a corrupt line is one bad row with its line number
rather than a crash an hour into a run, and a file of any size never sits in memory. Bad rows are
yielded with their problem; the caller decides whether to stop or to skip them. A line that is
entirely blank is no row at all, as in the training data. Two things mean that no row can be read,
so they are a :class:`DataError` at once: a header without a ``text`` column, and a file that is
not UTF-8 as a whole (UTF-16 or UTF-32, with a byte-order mark or with the NUL bytes they put in
ASCII text; or a binary file).
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import reprlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from sentence_mtl.data.task_folders import check_header, is_encodable
from sentence_mtl.errors import DataError, InvalidInputError

INPUT_FORMATS = ("txt", "tsv", "csv", "jsonl")
STANDARD_STREAM = "-"
TEXT_COLUMN = "text"
STDIN_NAME = "<stdin>"
STDOUT_NAME = "<stdout>"
_HEADER_FORMATS = ("tsv", "csv")
# Longer byte-order marks first: UTF-32-LE's begins with UTF-16-LE's.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_NUL = b"\x00"
# csv refuses fields over 131,072 characters by default; the other formats have no limit. 2**31 - 1
# is the largest value every platform's C long holds.
_CSV_FIELD_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class TextRow:
    """One data row: its 1-based line number, its text, and ``problem`` when it cannot be used."""

    line: int
    text: str
    problem: str | None = None


def is_standard_stream(location: str | Path) -> bool:
    """True for ``-``, which means standard input or output rather than a file of that name."""
    return str(location) == STANDARD_STREAM


def input_format_of(source: str | Path, input_format: str | None = None) -> str:
    """The format to read ``source`` as: the one given, else its suffix; ``-`` defaults to ``txt``."""
    return format_of(source, input_format, INPUT_FORMATS, "txt", "input")


def format_of(
    location: str | Path,
    given: str | None,
    valid: tuple[str, ...],
    stream_default: str,
    role: str,
    is_stream: bool = False,
) -> str:
    """``given`` if valid, else ``location``'s suffix; ``-`` has none, so it gets ``stream_default``.

    So does a stream (``is_stream``: a pipe or device) whose name has no suffix of a format.
    """
    if given is not None:
        if given not in valid:
            raise InvalidInputError(f"unknown {role} format {given!r}; valid formats are: {', '.join(valid)}")
        return given
    if is_standard_stream(location):
        return stream_default
    suffix = Path(location).suffix.lstrip(".").lower()
    if suffix not in valid and is_stream:
        return stream_default
    if suffix not in valid:
        raise InvalidInputError(
            f"cannot tell the {role} format of {location} from its suffix; name the file "
            f"{' or '.join('.' + name for name in valid)}, or give the format explicitly"
        )
    return suffix


class TextRowReader:
    """The rows of one input, read lazily; a context manager, so the file is closed however it ends.

    Opening reads the first line, checks the encoding and the header of a TSV or CSV file, so a
    file that cannot be read at all fails here, before the caller creates an output or loads
    anything slow.
    """

    def __init__(self, source: str | Path, input_format: str | None = None) -> None:
        self.source = source
        self.format = input_format_of(source, input_format)
        self.name = STDIN_NAME if is_standard_stream(source) else str(source)
        self._handle: BinaryIO | None = None if is_standard_stream(source) else _open_binary(Path(source))
        try:
            lines = _utf8_lines(self.name, self._handle or sys.stdin.buffer)
            self._rows = _ROW_READERS[self.format](self.name, lines)
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[TextRow]:
        return self._rows

    def close(self) -> None:
        """Close the file; standard input stays open, as it belongs to the process."""
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> TextRowReader:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()


def read_text_rows(source: str | Path, input_format: str | None = None) -> Iterator[TextRow]:
    """Yield the rows of ``source`` one by one (see :class:`TextRowReader`)."""
    with TextRowReader(source, input_format) as reader:
        yield from reader


def count_data_rows(source: str | Path, input_format: str | None = None) -> int | None:
    """How many rows a file holds, as a progress bar's total; None when the input can only be read once.

    It counts line breaks in 1 MiB blocks, far faster than parsing the rows. Standard input and
    anything else that is not a regular file (a pipe, a device) gives None, since counting would
    consume it. Blank lines, which are no rows, count too, and so does each line of a quoted CSV
    text that spans several, so the total can be a little high.
    """
    header = 1 if input_format_of(source, input_format) in _HEADER_FORMATS else 0
    if is_standard_stream(source) or not Path(source).is_file():
        return None
    lines, last = 0, b"\n"
    try:
        with open(source, "rb") as handle:
            while block := handle.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
    except OSError:
        return None  # the reader reports an unreadable file with its own message
    if last != b"\n":
        lines += 1
    return max(lines - header, 0)


def _open_binary(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as error:
        raise DataError(
            f"cannot read {path}: {error.strerror or error}; check that it exists and is readable"
        ) from None


def _utf8_lines(name: str, handle: IO[bytes]) -> Iterator[bytes]:
    """The raw lines, split on ``\\n`` only (texts may hold other breaks), without a leading UTF-8 BOM.

    The first line is read now: a file in another Unicode encoding is refused as a whole here,
    since every one of its lines would be garbage, or a bad row, after the model has loaded.
    """
    lines = iter(handle)
    first = next(lines, None)
    if first is None:
        return iter(())
    for bom, encoding in _WIDE_BOMS:
        if first.startswith(bom):
            raise DataError(
                f"{name} is {encoding} text (it starts with a {encoding} byte-order mark), but texts are "
                f"read as UTF-8; re-save it as UTF-8 (iconv -f {encoding} -t UTF-8 converts it)"
            )
    if _NUL in first:
        raise DataError(
            f"{name}, line 1: NUL bytes, which UTF-8 text never holds: the file is UTF-16 or UTF-32 "
            "without a byte-order mark, or not text; re-save it as UTF-8"
        )
    return itertools.chain([first.removeprefix(codecs.BOM_UTF8)], lines)


def _decode_line(raw: bytes) -> tuple[str, str | None]:
    """The line without its ending, and the problem when its bytes are not UTF-8 text."""
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    if _NUL in raw:
        return "", "a NUL byte (\\x00), which text never holds: is this part of the file UTF-16 or binary?"
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return "", _not_utf8(raw, error)


def _not_utf8(raw: bytes, error: UnicodeDecodeError) -> str:
    return f"bytes that are not UTF-8 ({raw[error.start : error.end]!r})"


def _checked_text(line: int, value: object) -> TextRow:
    """A row for ``value``, bad unless it is a non-blank string that UTF-8 can encode."""
    if not isinstance(value, str):
        return TextRow(line, "", f"{TEXT_COLUMN!r} is {reprlib.repr(value)}, not a string")
    if not is_encodable(value):
        return TextRow(line, "", f"{TEXT_COLUMN!r} holds a lone surrogate escape (such as \\ud800), not text")
    if not value.strip():
        return TextRow(line, "", "the text is empty")
    return TextRow(line, value)


def _text_index(name: str, columns: list[str]) -> int:
    """Where the ``text`` column is; without one no row can be read, so this is an error at once."""
    check_header(name, columns, 1)
    if TEXT_COLUMN not in columns:
        raise DataError(
            f"{name}, line 1: no {TEXT_COLUMN!r} column; columns found: {', '.join(columns) or '(none)'}. "
            f"Name the column that holds the sentences {TEXT_COLUMN!r}"
        )
    return columns.index(TEXT_COLUMN)


def _no_header(name: str) -> DataError:
    return DataError(
        f"{name} is empty; it needs a header line with a {TEXT_COLUMN!r} column, then one row per text"
    )


def _read_txt(name: str, lines: Iterator[bytes]) -> Iterator[TextRow]:
    for number, raw in enumerate(lines, start=1):
        text, problem = _decode_line(raw)
        if problem is not None:
            yield TextRow(number, "", problem)
        elif text.strip():  # a blank line is no row
            yield TextRow(number, text)


def _read_tsv(name: str, lines: Iterator[bytes]) -> Iterator[TextRow]:
    first = next(lines, None)
    if first is None:
        raise _no_header(name)
    header, problem = _decode_line(first)
    if problem is not None:
        raise DataError(f"{name}, line 1: {problem}; re-save the file with UTF-8 encoding")
    columns = [column.strip() for column in header.split("\t")]
    return _tsv_rows(lines, columns, _text_index(name, columns))


def _tsv_rows(lines: Iterator[bytes], columns: list[str], text_index: int) -> Iterator[TextRow]:
    for number, raw in enumerate(lines, start=2):
        line, problem = _decode_line(raw)
        if problem is not None:
            yield TextRow(number, "", problem)
            continue
        if not line.strip():  # a blank line is no row
            continue
        fields = line.split("\t")
        if len(fields) != len(columns):
            yield TextRow(
                number,
                "",
                f"{len(fields)} tab-separated fields, but the header has {len(columns)} "
                f"({', '.join(columns)}); TSV is not quoted, so a tab inside a text must be a space",
            )
            continue
        yield _checked_text(number, fields[text_index])


def _read_csv(name: str, lines: Iterator[bytes]) -> Iterator[TextRow]:
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    # A quoted text may span lines, so the csv module must see every line; bytes that are not UTF-8
    # survive as surrogate escapes and make their row bad, as a strict decode does in the other formats.
    reader = csv.reader((raw.decode("utf-8", "surrogateescape") for raw in lines), strict=True)
    header = _next_record(name, reader)
    if header is None:
        raise _no_header(name)
    problem = _not_utf8_field(header)
    if problem is not None:
        raise DataError(f"{name}, line 1: {problem}; re-save the file with UTF-8 encoding")
    columns = [column.strip() for column in header]
    return _csv_rows(name, reader, columns, _text_index(name, columns))


def _csv_rows(name: str, reader: Any, columns: list[str], text_index: int) -> Iterator[TextRow]:
    while True:
        number = reader.line_num + 1
        fields = _next_record(name, reader)
        if fields is None:
            return
        problem = _not_utf8_field(fields)
        if problem is not None:
            yield TextRow(number, "", problem)
        elif not any(field.strip() for field in fields):  # a blank line is no row
            continue
        elif len(fields) != len(columns):
            yield TextRow(
                number,
                "",
                f"{len(fields)} comma-separated fields, but the header has {len(columns)} "
                f"({', '.join(columns)}); put quotes around a text that holds commas",
            )
        else:
            yield _checked_text(number, fields[text_index])


def _next_record(name: str, reader: Any) -> list[str] | None:
    """The next CSV record; broken quoting hides where rows end, so it stops the file, not one row."""
    try:
        return next(reader, None)
    except csv.Error as error:
        raise DataError(f"{name}, line {reader.line_num}: malformed CSV ({error}); fix the quoting") from None


def _not_utf8_field(fields: list[str]) -> str | None:
    for field in fields:
        if not is_encodable(field):
            raw = field.encode("utf-8", "surrogateescape")
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                return _not_utf8(raw, error)
    return None


def _read_jsonl(name: str, lines: Iterator[bytes]) -> Iterator[TextRow]:
    for number, raw in enumerate(lines, start=1):
        line, problem = _decode_line(raw)
        if problem is not None:
            yield TextRow(number, "", problem)
        elif line.strip():  # a blank line is no row
            yield _jsonl_row(number, line)


def _jsonl_row(number: int, line: str) -> TextRow:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return TextRow(number, "", f"not valid JSON ({error.msg}, column {error.colno})")
    if not isinstance(record, dict):
        return TextRow(number, "", f'a JSON {type(record).__name__}, not an object such as {{"text": "..."}}')
    if TEXT_COLUMN not in record:
        return TextRow(number, "", f"no {TEXT_COLUMN!r} key; keys found: {', '.join(record) or '(none)'}")
    return _checked_text(number, record[TEXT_COLUMN])


_ROW_READERS = {"txt": _read_txt, "tsv": _read_tsv, "csv": _read_csv, "jsonl": _read_jsonl}
