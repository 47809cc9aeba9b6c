"""The layering of the package, checked on its source: what imports what, and where.

scripts/ is left out on purpose: gpu_check.py imports inside its stages so that one failing stage
does not stop the others, and make_golden_*.py run inside the official checkouts.
"""
import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "pointclora"
PROJECT = ("pointclora", "cuda_ext", "datasets", "bench")  # top-level names of the project's own modules
CHECKED = ("pointclora", "datasets", "tools", "bench")  # the folders whose imports are checked
COMPILED = "_C"  # the compiled extension cuda_ext._C (torch's naming), not a private name


def modules(folder: Path):
    return sorted(p for p in folder.rglob("*.py"))


def checked_modules():
    return [p for folder in CHECKED for p in modules(REPO / folder)]


def module_name(path: Path, node: ast.ImportFrom) -> str:
    """The dotted module of `from ... import` in `path`, relative imports resolved."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    base = package.rsplit(".", node.level - 1)[0] if node.level else ""
    return ".".join(x for x in (base, node.module) if x)


def is_project(name: str) -> bool:
    return name.split(".")[0] in PROJECT


def imported(path: Path, local_only: bool = False) -> list:
    """(line, dotted module) of the project imports in `path` (relative ones resolved);
    local_only: only those inside a function."""
    tree = ast.parse(path.read_text())
    found = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if local_only and id(node) not in inside:
            continue
        if isinstance(node, ast.ImportFrom):
            found.append((node.lineno, module_name(path, node)))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if is_project(name)]


@pytest.mark.parametrize("folder", ["profiler", "visualization"])
def test_profiler_and_visualization_never_import_the_engine(folder):
    bad = [(p.name, line, name) for p in modules(PACKAGE / folder) for line, name in imported(p)
           if name.startswith("pointclora.engine")]
    assert bad == []


def test_nothing_below_imports_visualization():
    bad = [(str(p.relative_to(REPO)), name) for p in modules(PACKAGE) if "visualization" not in p.parts
           for _, name in imported(p) if name.startswith("pointclora.visualization")]
    assert bad == []


SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


@pytest.mark.parametrize("folder", [f"pointclora/{name}" for name in SUBPACKAGES] + ["datasets", "tools", "bench"])
def test_no_project_import_inside_a_function(folder):
    bad = [(p.name, line, name) for p in modules(REPO / folder) for line, name in imported(p, local_only=True)
           if name != "cuda_ext._C"]
    assert bad == []


def test_no_project_import_inside_a_function_of_the_top_level_modules():
    bad = [(p.name, line, name) for p in PACKAGE.glob("*.py") for line, name in imported(p, local_only=True)]
    assert "engine" in SUBPACKAGES and "adapters" in SUBPACKAGES and len(list(PACKAGE.glob("*.py"))) > 3
    assert bad == []


def private_uses(path: Path, source: str = None) -> list:
    """(line, what) for each private name of another project module used in `path` (its text:
    `source`, default the file's): imported (`from .inject import _x`) or read off an imported
    project module (`inject._x`, `P._x`)."""
    tree = ast.parse(path.read_text() if source is None else source)
    modules_here, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or is_project(node.module or "")):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") and alias.name != COMPILED:
                    found.append((node.lineno, f"from {module_name(path, node)} import {alias.name}"))
                modules_here.add(alias.asname or alias.name)  # a module or a name: both may be read from
        elif isinstance(node, ast.Import):
            modules_here |= {a.asname or a.name.split(".")[0] for a in node.names if is_project(a.name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in modules_here and node.attr != COMPILED:
                found.append((node.lineno, f"{ast.unparse(node)}"))
    return found


def test_no_private_name_of_another_module_is_used():
    bad = [(str(p.relative_to(REPO)), line, what) for p in checked_modules() for line, what in private_uses(p)]
    assert bad == []


def test_the_private_name_check_sees_imports_and_attribute_reads():
    """The check above on code that breaks the rule both ways, and on code that keeps it."""
    source = ("from .inject import _find_targets, apply_adapters\nfrom .. import models\n"
              "import pointclora.engine.trainer as T\nimport os\n"
              "def f(m):\n    return models._lookup, T._x, os._exit, m._private, apply_adapters\n")
    found = [what for _, what in private_uses(PACKAGE / "adapters" / "probe.py", source)]
    assert found == ["from pointclora.adapters.inject import _find_targets", "models._lookup", "T._x"]


def test_engine_has_one_trainer_class_and_one_fit_loop():
    trainers, loops = [], []
    for p in modules(PACKAGE / "engine"):
        tree = ast.parse(p.read_text())
        trainers += [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name.endswith("Trainer")]
        loops += [p.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "train_one_epoch"]
    assert trainers == ["Trainer"] and loops == ["trainer.py"]


REPLACING = {"replace", "rename", "mkstemp", "NamedTemporaryFile"}  # os.replace / tempfile: a home-made atomic write


def test_atomic_writes_go_through_the_one_helper():
    """Only pointclora/io.py (atomic_path) builds a temporary file and renames it onto a target."""
    bad = []
    for p in checked_modules():
        if p == PACKAGE / "io.py":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in REPLACING and isinstance(node.value, ast.Name)
                    and node.value.id in ("os", "tempfile")):
                bad.append((str(p.relative_to(REPO)), node.lineno, f"{node.value.id}.{node.attr}"))
    assert bad == []
