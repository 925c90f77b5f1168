"""Scripts' docstrings are their ``--help`` text: the commands in them must print as written."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("Task*/*.py"), *ROOT.glob("bench/*.py")])


def docstring_source_and_value(path: Path) -> tuple[str, str]:
    """The docstring as typed in the file and as Python (and so ``--help``) reads it."""
    source = path.read_text(encoding="utf-8")
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant), f"{path} has no docstring"
    literal = ast.get_source_segment(source, node.value)
    body = literal.lstrip("rR")[3:-3]
    return body, node.value.value


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_commands_in_a_docstring_print_as_typed(path: Path) -> None:
    """A line continuation (``\\`` at a line's end) must survive, or the printed command is joined."""
    typed, printed = docstring_source_and_value(path)
    assert printed == typed, 'make the docstring raw (r"""...""") or drop the escapes'


def test_a_plain_docstring_with_a_continuation_is_caught(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text('"""Run:\n\n    python run.py --a 1 \\\n        --b 2\n"""\n', encoding="utf-8")
    typed, printed = docstring_source_and_value(script)
    assert typed != printed
    script.write_text('r"""Run:\n\n    python run.py --a 1 \\\n        --b 2\n"""\n', encoding="utf-8")
    typed, printed = docstring_source_and_value(script)
    assert typed == printed
