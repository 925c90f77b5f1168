"""Task folders: readers, errors that name file and line, dev carving, and the packaged demo data."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from sentence_mtl.data.demo import DEMO_TASK_LABELS
from sentence_mtl.data.task_folders import (
    DEMO_DATA_DIR,
    Split,
    TaskData,
    load_demo_tasks,
    load_task_folder,
    parse_task_argument,
)
from sentence_mtl.errors import DataError, InvalidInputError


def write_files(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return folder


def tsv(*rows: str, header: str = "text\tlabel") -> str:
    return "\n".join([header, *rows]) + "\n"


TRAIN_TSV = tsv("good film\tpos", "bad film\tneg", "fine film\tpos", "awful film\tneg")


# ----------------------------------------------------------------------------- parse_task_argument


def test_parse_task_argument_splits_on_first_equals() -> None:
    assert parse_task_argument("topic=data/topic") == ("topic", Path("data/topic"))
    assert parse_task_argument(" my_task-2 = a=b ") == ("my_task-2", Path("a=b"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("topic", "no '='"),
        ("=data/topic", "empty name or folder"),
        ("topic=", "empty name or folder"),
        ("top ic=data", "may hold only letters"),
        ("top.ic=data", "may hold only letters"),
        ("1topic=data", "must start with a letter"),
    ],
)
def test_parse_task_argument_rejects_bad_syntax(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_task_argument(text)


# ----------------------------------------------------------------------------- reading the three formats


def test_tsv_loads_sorted_labels_and_keeps_quotes_literally(tmp_path: Path) -> None:
    train = tsv('He said "great" twice\tpos', '"quoted from start to end"\tneg', "it's, well, ok\tpos")
    folder = write_files(
        tmp_path, {"train.tsv": train, "dev.tsv": tsv('a "b\tneg'), "test.tsv": tsv("c\tpos")}
    )
    task = load_task_folder("review", folder)
    assert task.labels == ["neg", "pos"]
    assert task.train.texts == ['He said "great" twice', '"quoted from start to end"', "it's, well, ok"]
    assert task.train.labels == [1, 0, 1]
    assert task.dev == Split(['a "b'], [0], str(folder / "dev.tsv"))
    assert task.test == Split(["c"], [1], str(folder / "test.tsv"))
    assert task.dev_carved is False


def test_tsv_accepts_crlf_bom_and_blank_lines(tmp_path: Path) -> None:
    content = "\ufefftext\tlabel\r\none\ta\r\n\r\ntwo\tb\r\n\r\n"
    folder = write_files(tmp_path, {"train.tsv": content, "dev.tsv": tsv("x\ta")})
    task = load_task_folder("t", folder)
    assert task.train.texts == ["one", "two"]
    assert task.labels == ["a", "b"]


def test_csv_uses_quoting(tmp_path: Path) -> None:
    train = 'text,label\n"Hello, world",pos\n"She said ""no""",neg\nplain,pos\n'
    folder = write_files(tmp_path, {"train.csv": train, "validation.csv": "text,label\nok,neg\n"})
    task = load_task_folder("t", folder)
    assert task.train.texts == ["Hello, world", 'She said "no"', "plain"]
    assert task.train.labels == [1, 0, 1]
    assert task.dev is not None and task.dev.source.endswith("validation.csv")


def test_jsonl_reads_objects_and_integer_labels(tmp_path: Path) -> None:
    lines = [{"text": "first", "label": 1}, {"text": "second", "label": 0, "extra": [1]}]
    train = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    folder = write_files(tmp_path, {"train.jsonl": train, "dev.jsonl": '{"text": "x", "label": "1"}\n'})
    task = load_task_folder("t", folder)
    assert task.labels == ["0", "1"]
    assert task.train.labels == [1, 0]
    assert task.dev is not None and task.dev.labels == [1]


def test_column_named_after_the_task_is_the_label_when_there_is_no_label_column(tmp_path: Path) -> None:
    header = "text\ttopic\tsentiment"
    rows = ("goal!\tsports\tpositive", "rates up\tbusiness\tneutral", "lost 3-0\tsports\tnegative")
    folder = write_files(
        tmp_path, {"train.tsv": tsv(*rows, header=header), "dev.tsv": tsv(rows[0], header=header)}
    )
    assert load_task_folder("topic", folder).train.labels == [1, 0, 1]
    sentiment = load_task_folder("sentiment", folder)
    assert sentiment.labels == ["negative", "neutral", "positive"]
    assert sentiment.train.labels == [2, 1, 0]


def test_label_column_wins_over_a_task_named_column(tmp_path: Path) -> None:
    train = tsv("a\tx\tp", "b\ty\tq", header="text\tlabel\ttopic")
    folder = write_files(
        tmp_path, {"train.tsv": train, "dev.tsv": tsv("c\tx\tp", header="text\tlabel\ttopic")}
    )
    assert load_task_folder("topic", folder).labels == ["x", "y"]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"dev.tsv": TRAIN_TSV}, r"has no train\.tsv, train\.csv or train\.jsonl"),
        (
            {"train.tsv": TRAIN_TSV, "train.csv": "text,label\na,b\n"},
            r"2 train files \(train\.csv, train\.tsv\)",
        ),
        ({"train.tsv": TRAIN_TSV, "dev.tsv": TRAIN_TSV, "validation.jsonl": "{}"}, r"2 dev files"),
        ({"train.txt": TRAIN_TSV}, r"train\.txt: unknown file type; save the train split as train\.tsv"),
        ({"train.tsv": TRAIN_TSV, "test.json": "{}"}, r"test\.json: unknown file type"),
        ({"train.tsv": " \n\n"}, r"train\.tsv is empty"),
        ({"train.tsv": "text\tlabel\n"}, r"train\.tsv has no rows after its header"),
        (
            {"train.tsv": tsv("a", header="text")},
            r"train\.tsv, line 1: no 'label' column, nor one named after the task 't'; columns found: text",
        ),
        (
            {"train.tsv": tsv("x\ta", header="sentence\tlabel")},
            r"train\.tsv, line 1: no 'text' column; columns found: sentence, label",
        ),
        ({"train.tsv": tsv("a\tx", "b\ty", "\tx")}, r"train\.tsv, line 4: the text is empty"),
        ({"train.tsv": tsv("a\tx", "   \ty")}, r"train\.tsv, line 3: the text is empty"),
        ({"train.tsv": tsv("a\tx", "b\t ")}, r"train\.tsv, line 3: the label is empty"),
        (
            {"train.tsv": tsv("a\tx", "b\ty", "c\ty\textra")},
            r"train\.tsv, line 4: 3 tab-separated fields, but the header has 2",
        ),
        (
            {"train.tsv": tsv("a\tx", header="text\ttext")},
            r"train\.tsv, line 1: the header repeats column\(s\) text",
        ),
        ({"train.tsv": tsv("a\tx", "b\tx")}, r"every row has the label 'x'; a classifier needs at least two"),
        ({"train.csv": "text,label\na,x\nb,y,z\n"}, r"train\.csv, line 3: 3 comma-separated fields"),
        ({"train.csv": 'text,label\na,x\n"b"c,y\nd,y\n'}, r"train\.csv, line 3: malformed CSV"),
        (
            {"train.csv": 'text,label\na,x\n"b,y\n'},
            r"train\.csv, line 3: malformed CSV \(unexpected end of data",
        ),
        (
            {"train.jsonl": '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"\n'},
            r"train\.jsonl, line 2: not valid JSON",
        ),
        (
            {"train.jsonl": '{"text": "a", "label": "x"}\n["b", "y"]\n'},
            r"train\.jsonl, line 2: a JSON list, not an object",
        ),
        (
            {"train.jsonl": '{"text": "a", "topic": "x"}\n'},
            r"train\.jsonl, line 1: no 'label' column, nor one named .*; columns found: text, topic",
        ),
        (
            {"train.jsonl": '{"text": "a", "label": "x"}\n\n{"text": "b", "lable": "y"}\n'},
            r"train\.jsonl, line 3: no 'label' column; columns found: text, lable",
        ),
        (
            {"train.jsonl": '{"text": "a", "label": "x"}\n{"text": 7, "label": "y"}\n'},
            r"train\.jsonl, line 2: 'text' is 7, not a string",
        ),
        ({"train.tsv": b"text\tlabel\na\tx\nb\xe9\ty\n"}, r"train\.tsv, line 3: bytes that are not UTF-8"),
        (
            {"train.tsv": TRAIN_TSV, "dev.tsv": tsv("a\tpos", "b\tneutral")},
            r"dev\.tsv, line 3: label 'neutral' does not occur in train\.tsv; known labels: neg, pos",
        ),
        (
            {"train.tsv": TRAIN_TSV, "dev.tsv": tsv("a\tpos"), "test.tsv": tsv("b\tPOS")},
            r"test\.tsv, line 2: label 'POS' does not occur in train\.tsv",
        ),
    ],
)
def test_reader_errors_name_file_and_line(
    tmp_path: Path, files: dict[str, str | bytes], message: str
) -> None:
    folder = write_files(tmp_path / "task", files)
    with pytest.raises(DataError, match=message):
        load_task_folder("t", folder)


def test_missing_folder_and_file_instead_of_folder(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"nowhere does not exist; point the task at a folder holding train\.tsv"
    ):
        load_task_folder("t", tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="file is not a folder"):
        load_task_folder("t", tmp_path / "file")


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_dev_fraction_must_be_in_range(tmp_path: Path, fraction: float) -> None:
    folder = write_files(tmp_path, {"train.tsv": TRAIN_TSV})
    with pytest.raises(InvalidInputError, match="dev_fraction must be at least 0 and below 1"):
        load_task_folder("t", folder, dev_fraction=fraction)


# ----------------------------------------------------------------------------- carving a dev split


def carve_folder(tmp_path: Path) -> Path:
    rows = [f"sentence {label} {i}\t{label}" for label in ("a", "b", "c") for i in range(20)]
    rows.append("the only d\td")  # a class with one example cannot be stratified
    return write_files(tmp_path, {"train.tsv": tsv(*rows), "test.tsv": tsv("t\ta")})


def test_carved_dev_is_stratified_disjoint_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = carve_folder(tmp_path)
    with caplog.at_level(logging.INFO, logger="sentence_mtl.data.task_folders"):
        task = load_task_folder("t", folder, seed=3, dev_fraction=0.25)
    assert task.dev_carved is True
    assert task.dev is not None
    assert task.labels == ["a", "b", "c", "d"]
    assert Counter(task.dev.labels) == {0: 5, 1: 5, 2: 5}
    assert Counter(task.train.labels) == {0: 15, 1: 15, 2: 15, 3: 1}
    assert not set(task.dev.texts) & set(task.train.texts)
    assert len(task.dev.texts) + len(task.train.texts) == 61
    assert "carved dev split: 25%, seed 3" in task.dev.source
    assert task.test is not None and task.test.texts == ["t"]
    assert "has no dev file, so 15 of 61 training rows" in caplog.text


def test_carved_dev_is_deterministic_with_the_seed(tmp_path: Path) -> None:
    folder = carve_folder(tmp_path)
    first = load_task_folder("t", folder, seed=7, dev_fraction=0.25)
    again = load_task_folder("t", folder, seed=7, dev_fraction=0.25)
    other = load_task_folder("t", folder, seed=8, dev_fraction=0.25)
    assert first == again
    assert first.dev is not None and other.dev is not None
    assert first.dev.texts != other.dev.texts


def test_zero_dev_fraction_keeps_all_rows_for_training(tmp_path: Path) -> None:
    task = load_task_folder("t", carve_folder(tmp_path), dev_fraction=0)
    assert task.dev is None and task.dev_carved is False
    assert len(task.train) == 61


def test_too_few_rows_to_carve_is_a_data_error(tmp_path: Path) -> None:
    folder = write_files(tmp_path, {"train.tsv": TRAIN_TSV})
    with pytest.raises(
        DataError, match=r"train\.tsv: too few rows to carve a stratified dev split of 10%.*add a dev"
    ):
        load_task_folder("t", folder)


# ----------------------------------------------------------------------------- the packaged demo data


@pytest.fixture(scope="module")
def demo_tasks() -> list[TaskData]:
    return load_demo_tasks()


def test_demo_tasks_have_the_declared_label_sets(demo_tasks: list[TaskData]) -> None:
    assert [task.name for task in demo_tasks] == ["topic", "sentiment"]
    for task in demo_tasks:
        assert task.labels == DEMO_TASK_LABELS[task.name]
        assert task.dev_carved is False
        for split in (task.train, task.dev, task.test):
            assert split is not None
            assert set(split.labels) == set(range(len(task.labels))), (task.name, split.source)


def test_demo_data_has_at_least_24_sentences_per_cell_and_clean_splits(demo_tasks: list[TaskData]) -> None:
    topic, sentiment = demo_tasks
    cells: Counter[tuple[str, str]] = Counter()
    seen: dict[str, str] = {}
    for name in ("train", "dev", "test"):
        topic_split, sentiment_split = getattr(topic, name), getattr(sentiment, name)
        assert topic_split.texts == sentiment_split.texts  # one file, two label columns
        for text, t, s in zip(topic_split.texts, topic_split.labels, sentiment_split.labels, strict=True):
            assert text not in seen, f"{text!r} is in both {seen.get(text)} and {name}"
            seen[text] = name
            cells[topic.labels[t], sentiment.labels[s]] += 1
            assert text == text.strip() and "\t" not in text
    assert len(cells) == 18
    assert min(cells.values()) >= 24
    assert len({text.casefold() for text in seen}) == len(seen)
    train_share = len(topic.train) / len(seen)
    assert 0.65 <= train_share <= 0.75


def test_demo_files_are_plain_tsv_with_the_documented_columns() -> None:
    for name in ("train", "dev", "test"):
        lines = (DEMO_DATA_DIR / f"{name}.tsv").read_text(encoding="utf-8").splitlines()
        assert lines[0] == "text\ttopic\tsentiment"
        assert all(line.count("\t") == 2 for line in lines)


def test_a_csv_field_longer_than_the_csv_modules_default_limit_loads(tmp_path: Path) -> None:
    long_text = "word " * 40_000  # 200,000 characters; csv refuses fields over 131,072 by default
    folder = write_files(tmp_path, {"train.csv": f'text,label\n"{long_text}",x\nshort,y\n'})
    task = load_task_folder("t", folder, dev_fraction=0)
    assert task.train.texts[0] == long_text


def test_a_dev_split_cannot_be_carved_when_every_label_occurs_once(tmp_path: Path) -> None:
    folder = write_files(tmp_path, {"train.tsv": tsv("one\ta", "two\tb", "three\tc")})
    with pytest.raises(
        DataError, match=r"every label occurs only once.*add a dev file or more rows per label"
    ):
        load_task_folder("t", folder)
