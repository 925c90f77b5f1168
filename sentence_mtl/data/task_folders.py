"""Task folders → datasets: reading train/dev/test files, label sets, and the built-in demo data.

A task folder holds ``train.*`` (required), ``dev.*`` or ``validation.*`` and ``test.*``
(optional), where ``*`` is ``tsv``, ``csv`` or ``jsonl``. Every file has a ``text`` column and a
``label`` column of label names; a file that labels each sentence for several tasks may instead
have a column named after the task (``topic``, ``sentiment``), so one file serves each of them.
The label list is the sorted set of training labels, as in HF's ``run_glue``, so label indices do
not depend on row order. Every problem with a file is a :class:`DataError` that names the file and
line, because a wrong row found after an hour of training costs the hour.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from sentence_mtl.data.demo import DEMO_TASK_LABELS
from sentence_mtl.errors import DataError, InvalidInputError
from sentence_mtl.model.tasks import check_task_name

logger = logging.getLogger(__name__)

FILE_FORMATS = ("tsv", "csv", "jsonl")
SPLIT_STEMS = {"train": ("train",), "dev": ("dev", "validation"), "test": ("test",)}
DEMO_DATA_DIR = Path(__file__).with_name("demo_data")


@dataclass
class Split:
    """One split of a task; ``labels`` are indices into :attr:`TaskData.labels`."""

    texts: list[str]
    labels: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TaskData:
    """A task's label names and splits; ``dev_carved`` says the dev split was cut from the train file."""

    name: str
    labels: list[str]
    train: Split
    dev: Split | None
    test: Split | None
    dev_carved: bool


def parse_task_argument(text: str) -> tuple[str, Path]:
    """Parse the command-line form ``NAME=DIR`` (the first ``=`` separates them)."""
    name, separator, folder = text.partition("=")
    name, folder = name.strip(), folder.strip()
    if not separator:
        raise InvalidInputError(f"task {text!r} has no '='; write NAME=DIR, e.g. topic=data/topic")
    if not name or not folder:
        raise InvalidInputError(
            f"task {text!r} has an empty name or folder; write NAME=DIR, e.g. topic=data/topic"
        )
    return check_task_name(name), Path(folder)


# ----------------------------------------------------------------------------- reading one file


@dataclass
class _Table:
    """A file's rows as ``(line number, {column: value})``; TSV and CSV also have a header line."""

    path: Path
    header: tuple[int, list[str]] | None
    rows: list[tuple[int, dict[str, object]]]

    def columns_at(self, line: int, record: dict[str, object]) -> tuple[str, list[str]]:
        """Where to report a missing column, and the columns found: the header's, or a JSONL line's keys."""
        if self.header is not None:
            return f"{self.path}, line {self.header[0]}", self.header[1]
        return f"{self.path}, line {line}", list(record)


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(
            f"cannot read {path}: {error.strerror or error}; check that it exists and is readable"
        ) from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: bytes that are not UTF-8 ({data[error.start : error.end]!r}); "
            "re-save the file with UTF-8 encoding"
        ) from None


def _lines(text: str) -> list[tuple[int, str]]:
    """Non-blank physical lines with 1-based numbers; split on "\\n" only, as texts may hold other breaks."""
    numbered = ((number, line.removesuffix("\r")) for number, line in enumerate(text.split("\n"), start=1))
    return [(number, line) for number, line in numbered if line.strip()]


def check_header(path: str | Path, columns: list[str], line: int) -> None:
    """Refuse a header that repeats a column, since a row could then not say which value is meant."""
    duplicated = sorted({column for column in columns if columns.count(column) > 1})
    if duplicated:
        raise DataError(
            f"{path}, line {line}: the header repeats column(s) {', '.join(duplicated)}; rename them"
        )


def _read_tsv(path: Path, text: str) -> _Table:
    lines = _lines(text)
    header_line, header_text = lines[0]
    columns = [column.strip() for column in header_text.split("\t")]
    check_header(path, columns, header_line)
    rows = []
    for number, line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise DataError(
                f"{path}, line {number}: {len(fields)} tab-separated fields, but the header has "
                f"{len(columns)} ({', '.join(columns)}); TSV files are not quoted, so replace tabs inside a "
                "text by spaces"
            )
        rows.append((number, dict(zip(columns, fields, strict=True))))
    return _Table(path, (header_line, columns), rows)


def _read_csv(path: Path, text: str) -> _Table:
    # csv refuses fields over 131,072 characters by default; TSV and JSONL have no such limit.
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # bad quoting is an error, not a guess
    header: tuple[int, list[str]] | None = None
    rows = []
    try:
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if header is None:
                header = (reader.line_num, [column.strip() for column in fields])
                check_header(path, header[1], reader.line_num)
                continue
            columns = header[1]
            if len(fields) != len(columns):
                raise DataError(
                    f"{path}, line {reader.line_num}: {len(fields)} comma-separated fields, but the header "
                    f"has {len(columns)} ({', '.join(columns)}); put quotes around a text that holds commas"
                )
            rows.append((reader.line_num, dict(zip(columns, fields, strict=True))))
    except csv.Error as error:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({error}); fix the quoting") from None
    return _Table(path, header, rows)


def _read_jsonl(path: Path, text: str) -> _Table:
    rows = []
    for number, line in _lines(text):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path}, line {number}: not valid JSON ({error.msg}, column {error.colno}); "
                'each line must be one JSON object such as {"text": "...", "label": "..."}'
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path}, line {number}: a JSON {type(record).__name__}, not an object; "
                'each line must be one JSON object such as {"text": "...", "label": "..."}'
            )
        rows.append((number, record))
    return _Table(path, None, rows)


_READERS = {"tsv": _read_tsv, "csv": _read_csv, "jsonl": _read_jsonl}


def _read_table(path: Path) -> _Table:
    text = _decode(path)
    if not text.strip():
        raise DataError(
            f"{path} is empty; it needs a header line with text and label columns, then one row per example"
        )
    table = _READERS[path.suffix.lstrip(".")](path, text)
    if not table.rows:
        raise DataError(f"{path} has no rows after its header; add examples or remove the file")
    return table


def _label_column(table: _Table, task: str) -> str:
    """``label``, else the column named after the task; JSONL files decide on their first line."""
    where, columns = table.columns_at(*table.rows[0])
    if "label" in columns:
        return "label"
    if task in columns:
        return task
    raise DataError(
        f"{where}: no 'label' column, nor one named after the task {task!r}; columns found: "
        f"{', '.join(columns)}. Rename the label column to 'label' or '{task}'"
    )


def _cell(table: _Table, line: int, record: dict[str, object], column: str, allow_int: bool) -> str:
    if column not in record:
        where, columns = table.columns_at(line, record)
        raise DataError(f"{where}: no {column!r} column; columns found: {', '.join(columns)}. Add one")
    value = record[column]
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise DataError(
            f"{table.path}, line {line}: {column!r} is {value!r}, not a string; write it as a quoted string"
        )
    if not is_encodable(value):
        raise DataError(
            f"{table.path}, line {line}: {column!r} holds a lone surrogate escape (such as \\ud800), "
            "which is not text; fix or remove it"
        )
    return value


def is_encodable(value: str) -> bool:
    """False for strings with lone surrogates (JSON escapes like \\ud800), which no tokenizer accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_examples(path: Path, task: str) -> tuple[list[str], list[str], list[int]]:
    """Texts, label names and line numbers of one file, with empty texts and labels rejected."""
    table = _read_table(path)
    label_column = _label_column(table, task)
    texts, names, lines = [], [], []
    for line, record in table.rows:
        text = _cell(table, line, record, "text", allow_int=False)
        name = _cell(table, line, record, label_column, allow_int=True).strip()
        if not text.strip():
            raise DataError(f"{path}, line {line}: the text is empty; write the sentence or delete the row")
        if not name:
            raise DataError(f"{path}, line {line}: the label is empty; give the row a label or delete it")
        texts.append(text)
        names.append(name)
        lines.append(line)
    return texts, names, lines


# ----------------------------------------------------------------------------- a task folder


def _find_split_file(folder: Path, split: str) -> Path | None:
    found: list[Path] = []
    unsupported: list[Path] = []
    for stem in SPLIT_STEMS[split]:
        for path in sorted(folder.glob(f"{stem}.*")):
            if path.is_file():
                (found if path.name[len(stem) + 1 :] in FILE_FORMATS else unsupported).append(path)
    if len(found) > 1:
        raise DataError(
            f"{folder} holds {len(found)} {split} files ({', '.join(p.name for p in found)}), so it is "
            f"ambiguous which to use; keep one"
        )
    if found:
        return found[0]
    if unsupported:
        raise DataError(
            f"{unsupported[0]}: unknown file type; save the {split} split as "
            f"{' or '.join(f'{SPLIT_STEMS[split][0]}.{ext}' for ext in FILE_FORMATS)}"
        )
    return None


def _load_eval_split(path: Path, task: str, labels: list[str], train_name: str) -> Split:
    texts, names, lines = _read_examples(path, task)
    index = {label: i for i, label in enumerate(labels)}
    for name, line in zip(names, lines, strict=True):
        if name not in index:
            raise DataError(
                f"{path}, line {line}: label {name!r} does not occur in {train_name}; known labels: "
                f"{', '.join(labels)}. Fix the label or add training examples of it"
            )
    return Split(texts, [index[name] for name in names], str(path))


def _carve_dev(train: Split, n_labels: int, dev_fraction: float, seed: int) -> tuple[Split, Split]:
    """Stratified train/dev split; classes with one example stay in train, as they cannot be stratified."""
    labels = np.asarray(train.labels)
    counts = np.bincount(labels, minlength=n_labels)
    splittable = np.flatnonzero(counts[labels] >= 2)
    singletons = np.flatnonzero(counts[labels] < 2)
    if len(splittable) == 0:
        raise DataError(
            f"{train.source}: every label occurs only once, so no dev rows can be carved from it (a dev "
            "row must leave an example of its label in train); add a dev file or more rows per label"
        )
    try:
        keep, dev = train_test_split(
            splittable, test_size=dev_fraction, stratify=labels[splittable], random_state=seed
        )
    except ValueError as error:
        raise DataError(
            f"{train.source}: too few rows to carve a stratified dev split of {dev_fraction:.0%} from it "
            f"({error}); add a dev file, or train without one (--dev-fraction 0 keeps the last step's model)"
        ) from None
    keep = np.sort(np.concatenate([keep, singletons]))
    dev = np.sort(dev)

    def subset(rows: np.ndarray, source: str) -> Split:
        return Split([train.texts[i] for i in rows], [train.labels[i] for i in rows], source)

    return (
        subset(keep, f"{train.source} (without the carved dev rows)"),
        subset(dev, f"{train.source} (carved dev split: {dev_fraction:.0%}, seed {seed})"),
    )


def load_task_folder(name: str, folder: str | Path, seed: int = 0, dev_fraction: float = 0.1) -> TaskData:
    """Load a task folder (see the module docstring) into a :class:`TaskData`.

    Without a dev file, a stratified ``dev_fraction`` of train becomes the dev split
    (``random_state=seed``, so the same seed gives the same split) and ``dev_carved`` is true;
    ``dev_fraction=0`` leaves ``dev`` as ``None`` instead.
    """
    check_task_name(name)
    if not 0 <= dev_fraction < 1:
        raise InvalidInputError(f"dev_fraction must be at least 0 and below 1, got {dev_fraction}")
    folder = Path(folder)
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(
            f"task {name!r}: {folder} {problem}; point the task at a folder holding train.tsv, train.csv or "
            "train.jsonl"
        )
    train_path = _find_split_file(folder, "train")
    if train_path is None:
        raise DataError(f"task {name!r}: {folder} has no train.tsv, train.csv or train.jsonl; add one")
    dev_path = _find_split_file(folder, "dev")
    test_path = _find_split_file(folder, "test")

    texts, names, _ = _read_examples(train_path, name)
    labels = sorted(set(names))
    if len(labels) < 2:
        raise DataError(
            f"{train_path}: every row has the label {labels[0]!r}; a classifier needs at least two labels"
        )
    index = {label: i for i, label in enumerate(labels)}
    train = Split(texts, [index[label] for label in names], str(train_path))
    test = _load_eval_split(test_path, name, labels, train_path.name) if test_path else None

    if dev_path is not None:
        dev = _load_eval_split(dev_path, name, labels, train_path.name)
        return TaskData(name, labels, train, dev, test, False)
    task = TaskData(name, labels, train, None, test, False)
    return task if dev_fraction == 0 else carve_dev(task, dev_fraction, seed)


def carve_dev(task: TaskData, dev_fraction: float, seed: int) -> TaskData:
    """The task with a stratified ``dev_fraction`` of its train rows as its dev split (it must have none)."""
    if task.dev is not None:
        raise InvalidInputError(
            f"task {task.name!r} already has a dev split; only a task without one is carved"
        )
    train, dev = _carve_dev(task.train, len(task.labels), dev_fraction, seed)
    logger.info(
        "task %r: %s has no dev file, so %d of %d training rows (stratified, seed %d) form the dev split",
        task.name,
        task.train.source,
        len(dev),
        len(dev) + len(train),
        seed,
    )
    return TaskData(task.name, task.labels, train, dev, task.test, True)


def load_tasks(arguments: Sequence[str], seed: int = 0, dev_fraction: float = 0.1) -> list[TaskData]:
    """The tasks that ``NAME=DIR`` arguments name, or the built-in demo tasks when there are none.

    ``seed`` carves missing dev splits; keep it fixed so every training seed sees the same dev set.
    """
    if not arguments:
        return load_demo_tasks(seed=seed)
    tasks = []
    for text in arguments:
        name, folder = parse_task_argument(text)
        tasks.append(load_task_folder(name, folder, seed=seed, dev_fraction=dev_fraction))
    return tasks


def tasks_by_name(tasks: Sequence[TaskData]) -> dict[str, TaskData]:
    """The tasks keyed by name; none, or two with one name, is an error."""
    if not tasks:
        raise InvalidInputError("no tasks to train; pass --task NAME=DIR or use the built-in demo data")
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"task names must be unique, got {names}")
    return {task.name: task for task in tasks}


def load_demo_tasks(seed: int = 0) -> list[TaskData]:
    """The built-in demo: the same sentences labelled for ``topic`` and for ``sentiment``.

    The packaged files ship a dev split, so ``seed`` only matters if that file were removed.
    """
    tasks = []
    for name, expected in DEMO_TASK_LABELS.items():
        task = load_task_folder(name, DEMO_DATA_DIR, seed=seed)
        if task.labels != expected:
            raise DataError(
                f"the packaged demo data in {DEMO_DATA_DIR} has {name} labels {task.labels}, expected "
                f"{expected}; reinstall the package"
            )
        tasks.append(task)
    return tasks
