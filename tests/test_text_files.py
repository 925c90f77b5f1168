"""Reading texts from files row by row: formats, line numbers, bad rows, headers, stdin and laziness."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentence_mtl.errors import DataError, InvalidInputError
from sentence_mtl.files.reading import TextRow, TextRowReader, count_data_rows, read_text_rows

TEXTS = ["A plain sentence.", 'Commas, "quotes" and more', "naïve café ☕", "last one"]


def write_texts(path: Path, texts: list[str]) -> Path:
    """``texts`` in the format of ``path``'s suffix, each with a label column where there are columns."""
    suffix = path.suffix
    if suffix == ".txt":
        path.write_text("".join(f"{text}\n" for text in texts), encoding="utf-8")
    elif suffix == ".tsv":
        path.write_text("label\ttext\n" + "".join(f"x\t{text}\n" for text in texts), encoding="utf-8")
    elif suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["label", "text"])
            writer.writerows(["x", text] for text in texts)
    else:
        path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    return path


def rows(path: Path, input_format: str | None = None) -> list[TextRow]:
    return list(read_text_rows(path, input_format))


@pytest.mark.parametrize("suffix", [".txt", ".tsv", ".csv", ".jsonl"])
def test_each_format_yields_its_texts_in_order_with_line_numbers(tmp_path: Path, suffix: str) -> None:
    path = write_texts(tmp_path / f"input{suffix}", TEXTS)
    first_line = 2 if suffix in (".tsv", ".csv") else 1
    expected = [TextRow(first_line + index, text) for index, text in enumerate(TEXTS)]
    assert rows(path) == expected
    assert count_data_rows(path) == len(TEXTS)


def test_bom_crlf_and_a_missing_final_newline_are_handled(tmp_path: Path) -> None:
    path = tmp_path / "windows.tsv"
    path.write_bytes(b"\xef\xbb\xbftext\tlabel\r\nfirst\ta\r\nsecond\tb")
    assert rows(path) == [TextRow(2, "first"), TextRow(3, "second")]
    assert count_data_rows(path) == 2
    (tmp_path / "windows.txt").write_bytes(b"one\r\ntwo\r\n")
    assert rows(tmp_path / "windows.txt") == [TextRow(1, "one"), TextRow(2, "two")]


@pytest.mark.parametrize(
    ("name", "content", "first_line"),
    [
        ("texts.txt", "one\n\n   \ntwo\n\n", 1),
        ("texts.tsv", "text\tid\none\t1\n\n \t \ntwo\t2\n\n", 2),
        ("texts.csv", "text,id\none,1\n\n ,\ntwo,2\n\n", 2),
        ("texts.jsonl", '{"text": "one"}\n\n  \n{"text": "two"}\n\n', 1),
    ],
)
def test_blank_lines_are_no_rows_and_the_line_numbers_stay_physical(
    tmp_path: Path, name: str, content: str, first_line: int
) -> None:
    """As in the training data: a blank line, at the end or between rows, is passed over, not a bad row."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert rows(path) == [TextRow(first_line, "one"), TextRow(first_line + 3, "two")]


@pytest.mark.parametrize(
    ("name", "content", "bad_line"),
    [
        ("bad.txt", b"good\nbad \xff byte\ngood again\n", 2),
        ("bad.tsv", b"text\ngood\nbad \xff byte\ngood again\n", 3),
        ("bad.csv", b'text\n"good"\n"bad \xff byte"\ngood again\n', 3),
        ("bad.jsonl", b'{"text": "good"}\n{"text": "bad \xff byte"}\n{"text": "good again"}\n', 2),
    ],
)
def test_invalid_utf8_is_a_bad_row_with_its_line_number(
    tmp_path: Path, name: str, content: bytes, bad_line: int
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    found = rows(path)
    assert [(row.line, row.problem) for row in found if row.problem] == [
        (bad_line, "bytes that are not UTF-8 (b'\\xff')")
    ]
    assert [row.text for row in found if not row.problem] == ["good", "good again"]


def test_tsv_rows_with_the_wrong_field_count_or_an_empty_text_are_bad(tmp_path: Path) -> None:
    path = tmp_path / "rows.tsv"
    path.write_text("text\tlabel\nfine\ta\ntab\tinside\ta\n\tb\n", encoding="utf-8")
    found = rows(path)
    assert found[0] == TextRow(2, "fine")
    assert found[1].line == 3 and "3 tab-separated fields, but the header has 2" in str(found[1].problem)
    assert found[2] == TextRow(4, "", "the text is empty")


def test_jsonl_problems_are_named_per_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    lines = ['{"text": "ok"}', "[1, 2]", '{"label": "a"}', "{not json", '{"text": 5}', '{"text": "\\ud800"}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = [(row.line, row.problem) for row in rows(path)]
    assert problems[0] == (1, None)
    assert problems[1] == (2, 'a JSON list, not an object such as {"text": "..."}')
    assert problems[2] == (3, "no 'text' key; keys found: label")
    assert problems[3][0] == 4 and str(problems[3][1]).startswith("not valid JSON")
    assert problems[4] == (5, "'text' is 5, not a string")
    assert problems[5][0] == 6 and "lone surrogate" in str(problems[5][1])


def test_csv_reads_quoted_line_breaks_and_reports_the_first_line_of_a_row(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('id,text\n1,"two\nlines"\n2,short\n3\n', encoding="utf-8")
    found = rows(path)
    assert found[:2] == [TextRow(2, "two\nlines"), TextRow(4, "short")]
    assert found[2].line == 5 and "1 comma-separated fields" in str(found[2].problem)


def test_malformed_csv_quoting_stops_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text('text\n"fine"\n"unclosed\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.csv, line \d+: malformed CSV .*fix the quoting"):
        rows(path)


@pytest.mark.parametrize("suffix", [".tsv", ".csv"])
def test_a_header_without_a_text_column_fails_when_the_file_is_opened(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"no_text{suffix}"
    separator = "\t" if suffix == ".tsv" else ","
    path.write_text(f"sentence{separator}label\nhello{separator}a\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        TextRowReader(path)
    message = str(caught.value)
    assert f"{path}, line 1: no 'text' column; columns found: sentence, label" in message
    assert "Name the column that holds the sentences 'text'" in message


def test_empty_or_repeated_headers_and_missing_files_are_data_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.tsv").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.tsv is empty; it needs a header line with a .text. column"):
        TextRowReader(tmp_path / "empty.tsv")
    (tmp_path / "twice.csv").write_text("text,text\na,b\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1: the header repeats column"):
        TextRowReader(tmp_path / "twice.csv")
    with pytest.raises(DataError, match=r"cannot read .*missing\.txt: No such file"):
        TextRowReader(tmp_path / "missing.txt")
    assert rows(write_texts(tmp_path / "none.jsonl", [])) == []


def test_formats_come_from_the_suffix_or_are_given(tmp_path: Path) -> None:
    path = tmp_path / "texts.data"
    path.write_text('{"text": "hi"}\n', encoding="utf-8")
    with pytest.raises(
        InvalidInputError, match=r"cannot tell the input format of .*texts.data.*\.txt or \.tsv"
    ):
        TextRowReader(path)
    assert rows(path, "jsonl") == [TextRow(1, "hi")]
    with pytest.raises(InvalidInputError, match="unknown input format 'xml'; valid formats are: txt, tsv"):
        TextRowReader(path, "xml")


class ExplodingStdin:
    """A stdin whose byte stream fails if read past its first line, to prove rows are read lazily."""

    def __init__(self, first_line: bytes) -> None:
        self.buffer = self
        self._first_line = first_line

    def __iter__(self) -> Iterator[bytes]:
        yield self._first_line
        raise AssertionError("the reader read past the row it was asked for")


def test_rows_are_read_lazily_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", ExplodingStdin(b"first sentence\n"))
    assert next(read_text_rows("-")) == TextRow(1, "first sentence")
    assert count_data_rows("-") is None


def test_stdin_takes_an_explicit_format(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b'\xef\xbb\xbf{"text": "from a pipe"}\n{"text": ""}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    assert rows(Path("-"), "jsonl") == [TextRow(1, "from a pipe"), TextRow(2, "", "the text is empty")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX only")
def test_a_pipe_is_not_counted_since_counting_would_consume_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    assert count_data_rows(tmp_path / "pipe.txt") is None


@pytest.mark.parametrize(
    ("encoding", "bom", "message"),
    [
        ("utf-16", b"", "is UTF-16 text (it starts with a UTF-16 byte-order mark)"),
        ("utf-16-be", codecs.BOM_UTF16_BE, "is UTF-16 text (it starts with a UTF-16 byte-order mark)"),
        ("utf-32", b"", "is UTF-32 text (it starts with a UTF-32 byte-order mark)"),
        ("utf-16-le", b"", "line 1: NUL bytes, which UTF-8 text never holds"),
        ("utf-32-be", b"", "line 1: NUL bytes, which UTF-8 text never holds"),
    ],
)
@pytest.mark.parametrize("suffix", [".txt", ".tsv", ".jsonl"])
def test_a_file_in_another_unicode_encoding_is_refused_when_it_is_opened(
    tmp_path: Path, encoding: str, bom: bytes, message: str, suffix: str
) -> None:
    """Every line of such a file is garbage as UTF-8, so the whole file is refused, --skip-bad or not."""
    path = write_texts(tmp_path / f"input{suffix}", TEXTS)
    path.write_bytes(bom + path.read_text(encoding="utf-8").encode(encoding))
    with pytest.raises(DataError) as caught:
        TextRowReader(path)
    assert message in str(caught.value) and "re-save it as UTF-8" in str(caught.value)


def test_a_nul_byte_later_in_a_file_is_a_bad_row_and_latin1_is_named(tmp_path: Path) -> None:
    """Further lines are checked as they are read: a NUL byte is no text, and Latin-1 is no UTF-8."""
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"fine\nhalf\x00way\ncaf\xe9\nend\n")
    assert [(row.line, row.problem) for row in rows(path)] == [
        (1, None),
        (2, "a NUL byte (\\x00), which text never holds: is this part of the file UTF-16 or binary?"),
        (3, "bytes that are not UTF-8 (b'\\xe9')"),
        (4, None),
    ]
