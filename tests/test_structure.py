"""The layering of the package, checked on its source: what imports what, and where."""
import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "pointclora"


def modules(folder: Path):
    return sorted(p for p in folder.rglob("*.py"))


def imported(path: Path, local_only: bool = False) -> list:
    """(line, dotted module) of the project imports in `path` (relative ones resolved);
    local_only: only those inside a function."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if local_only and id(node) not in inside:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            name = ".".join(x for x in (base, node.module) if x)
            found.append((node.lineno, name))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in ("pointclora", "cuda_ext")]


@pytest.mark.parametrize("folder", ["profiler", "visualization"])
def test_profiler_and_visualization_never_import_the_engine(folder):
    bad = [(p.name, line, name) for p in modules(PACKAGE / folder) for line, name in imported(p)
           if name.startswith("pointclora.engine")]
    assert bad == []


def test_nothing_below_imports_visualization():
    bad = [(str(p.relative_to(REPO)), name) for p in modules(PACKAGE) if "visualization" not in p.parts
           for _, name in imported(p) if name.startswith("pointclora.visualization")]
    assert bad == []


@pytest.mark.parametrize("folder", ["engine", "profiler", "visualization", "models"])
def test_no_project_import_inside_a_function(folder):
    bad = [(p.name, line, name) for p in modules(PACKAGE / folder) for line, name in imported(p, local_only=True)
           if name != "cuda_ext._C"]
    assert bad == []


def test_engine_has_one_trainer_class_and_one_fit_loop():
    trainers, loops = [], []
    for p in modules(PACKAGE / "engine"):
        tree = ast.parse(p.read_text())
        trainers += [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name.endswith("Trainer")]
        loops += [p.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "train_one_epoch"]
    assert trainers == ["Trainer"] and loops == ["trainer.py"]
