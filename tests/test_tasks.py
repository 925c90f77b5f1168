"""The one task-name rule: a name that data loading accepts is one the model accepts, and back."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentence_mtl.data.task_folders import load_task_folder, parse_task_argument
from sentence_mtl.errors import InvalidInputError
from sentence_mtl.model.tasks import TaskSpec, check_task_name

ACCEPTED = ["topic", "sst-2", "my_task", "T5", "a"]
REFUSED = ["", "2x", "_x", "-x", "my task", "a.b", "topic:2", "train", "keys", "é"]


def accepted_by_data(name: str) -> bool:
    try:
        parse_task_argument(f"{name}=folder")
    except InvalidInputError:
        return False
    return True


def accepted_by_model(name: str) -> bool:
    try:
        TaskSpec(name, ["a", "b"])
    except InvalidInputError:
        return False
    return True


@pytest.mark.parametrize("name", ACCEPTED + REFUSED)
def test_data_and_model_agree_on_every_name(name: str) -> None:
    expected = name in ACCEPTED
    assert accepted_by_data(name) is expected
    assert accepted_by_model(name) is expected


def test_a_refused_name_says_how_to_rename(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"must start with a letter.*rename the task"):
        check_task_name("2x")
    with pytest.raises(InvalidInputError, match=r"clashes with an nn\.ModuleDict attribute"):
        check_task_name("train")
    (tmp_path / "train.tsv").write_text("text\tlabel\na\tx\nb\ty\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="'_x'"):  # the API path checks the name too
        load_task_folder("_x", tmp_path)
