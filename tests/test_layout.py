"""The package's shape: imports point down the layers, never in a circle, and rooms stay small.

Imports are read from the source with ``ast``, so an import under ``TYPE_CHECKING`` or inside a
function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sentence_mtl"
SHARED = {"errors", "io", "devices", "batching", "metrics"}
# What each layer may import besides itself and the shared modules. An arrow never points up: the
# encoder knows nothing of tasks, the model nothing of training, and no layer knows the files layer.
ALLOWED = {
    "encoder": set(),
    "model": {"encoder"},
    "data": {"model"},
    "files": {"encoder", "model", "data"},
    "analysis": {"encoder"},
    "training": {"encoder", "model", "data"},
}
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports (``from pkg import name``: ``pkg.name`` if a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in modules:
                    found.add(submodule)
                elif node.module in modules:
                    found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(path, modules) - {name} for name, path in modules.items()}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return "shared" if parts[1] in SHARED else parts[1]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None (depth-first search)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            cycle = visit(target, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_circle_and_accepts_a_chain() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_type_checking_imports_count(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from sentence_mtl.training.loop import Trainer\n"
    )
    assert imported_modules(source, package_modules()) == {"sentence_mtl.training.loop"}


def test_no_import_circle_in_the_package() -> None:
    assert find_cycle(import_graph()) is None


def test_every_import_points_down_the_layers() -> None:
    upward = []
    for module, targets in import_graph().items():
        layer = layer_of(module)
        if layer == "package":
            continue
        allowed = {layer, "shared"} | (ALLOWED[layer] if layer != "shared" else set())
        upward += [f"{module} → {target}" for target in targets if layer_of(target) not in allowed]
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_each_layer_is_a_folder_and_every_folder_is_a_layer() -> None:
    folders = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert folders == set(ALLOWED)
    assert {path.stem for path in PACKAGE.glob("*.py")} == SHARED | {"__init__"}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: module_name(path))
def test_rooms_stay_small(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_FILE_LINES
    long_functions = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long_functions


def test_the_public_names_import_from_the_top() -> None:
    from sentence_mtl import MultiTaskModel, SentenceEncoder, SentenceMTLError, TaskSpec
    from sentence_mtl.encoder import SentenceEncoder as encoder_layer_name
    from sentence_mtl.model import MultiTaskModel as model_layer_name
    from sentence_mtl.model import TaskSpec as task_layer_name

    assert SentenceEncoder is encoder_layer_name
    assert MultiTaskModel is model_layer_name
    assert TaskSpec is task_layer_name
    assert issubclass(SentenceMTLError, Exception)
