"""The house (docs/architecture.md), checked from the source alone: no module is imported.

Every module of app/, index/ and training/ belongs to a room. Imports go app -> index ->
training and never back; between the rooms of index/ only along ALLOWED, and into another room
through its package (whose __init__.py exports what the others may use); and no module imports
itself back, however far round. Imports inside functions and under TYPE_CHECKING count too.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("app", "index", "training")  # each may import the ones after it, never one before
SHARED = {"index", "index.errors", "index.images"}  # leaf modules every room of index may import
ALLOWED = {  # room -> the rooms it may import
    "index.db": set(),
    "index.stores": set(),
    "index.catalog": {"index.db", "index.stores"},
    "index.ingest": {"index.catalog", "index.db"},
    "index.desk": {"index.catalog", "index.db"},
    "index.calibration": {"index.catalog", "index.desk", "index.db"},
    "index.auth": {"index.db"},
    "index.jobs": {"index.ingest", "index.catalog", "index.calibration", "index.desk", "index.db"},
}


def find_modules(root: Path) -> dict[str, Path]:
    """{dotted name: file} of every module (and package) of the layers under `root`."""
    found = {}
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[tuple[str, int]]:
    """(imported module, line) for every import anywhere in the module, resolved to the deepest
    known module: `from index.catalog import spaces` is index.catalog.spaces, `from index.catalog
    import Catalog` is the package index.catalog. Imports of other packages are left out."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add((target, node.lineno))
    return found


def room_of(name: str) -> str | None:
    """The module's room: a layer (app, training), a room of index, or "shared"; None: none."""
    layer = name.split(".")[0]
    if layer != "index":
        return layer
    if name in SHARED:
        return "shared"
    return next((room for room in ALLOWED if name == room or name.startswith(room + ".")), None)


def broken_rules(root: Path) -> list[str]:
    """Every import that breaks the house's rules, as 'importer:line -> imported: why'."""
    modules = find_modules(root)
    problems = [f"{name}: in no room (add it to one, or its room to ALLOWED)"
                for name in modules if room_of(name) is None]
    for name, path in modules.items():
        here = room_of(name)
        for target, line in sorted(imports_of(name, path, modules)):
            there, where = room_of(target), f"{name}:{line} -> {target}"
            if LAYERS.index(name.split(".")[0]) > LAYERS.index(target.split(".")[0]):
                problems.append(f"{where}: imports go app -> index -> training, never back")
            elif here == there or there in (None, "shared") or not target.startswith("index"):
                continue
            elif here == "shared":
                problems.append(f"{where}: a shared module imports no room")
            elif here.startswith("index.") and there not in ALLOWED[here]:
                problems.append(f"{where}: {here} may import only {sorted(ALLOWED[here]) or 'no other room'}")
            elif target != there:
                problems.append(f"{where}: another room is entered through its package, {there}")
    return problems


def cycles(root: Path) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), in no set order."""
    modules = find_modules(root)
    edges = {name: sorted({t for t, _ in imports_of(name, path, modules)}) for name, path in modules.items()}
    order, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(start: str) -> None:  # iterative: the graph may be deep
        work = [(start, iter(edges[start]))]
        order[start] = low[start] = len(order)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == order[node]:
                    component = []
                    while not component or component[-1] != node:
                        component.append(stack.pop())
                        on_stack.discard(component[-1])
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in order:
                order[child] = low[child] = len(order)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(edges[child])))
            elif child in on_stack:
                low[node] = min(low[node], order[child])

    for name in edges:
        if name not in order:
            visit(name)
    return found


def test_every_room_is_a_package():
    for room in ALLOWED:
        assert (REPO / Path(*room.split(".")) / "__init__.py").is_file(), room


def test_every_package_is_installed():
    """A package missing from pyproject's list works in the editable install, not in `pip install .`."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name, path in find_modules(REPO).items() if path.name == "__init__.py"}
    assert packages - listed == set()


def test_imports_follow_the_layers_and_the_rooms():
    problems = broken_rules(REPO)
    assert not problems, "\n".join(problems)


def test_no_module_imports_itself_back():
    found = cycles(REPO)
    assert not found, "\n".join(" <-> ".join(cycle) for cycle in found)


# -- the checks themselves, on a small made-up tree ---------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


HOUSE = {"app/__init__.py": "", "training/__init__.py": "", "training/errors.py": "", "index/__init__.py": "",
         "index/errors.py": "from training.errors import *\n",
         "index/db/__init__.py": "from index.db.models import Base\n", "index/db/models.py": "Base = 1\n",
         "index/catalog/__init__.py": "from index.catalog.core import Catalog\n",
         "index/catalog/core.py": "from index.db import Base\nfrom index.errors import *\nCatalog = 1\n"}


def test_a_sound_house_passes(tmp_path):
    root = write(tmp_path, HOUSE)
    assert broken_rules(root) == [] and cycles(root) == []


@pytest.mark.parametrize("module, line, broken", [
    ("training/errors.py", "import index\n", "never back"),
    ("index/db/models.py", "from index.catalog import Catalog\n", "index.db may import only no other room"),
    ("app/__init__.py", "from index.catalog.core import Catalog\n", "through its package, index.catalog"),
    ("index/errors.py", "from index.db import Base\n", "a shared module imports no room"),
    ("index/stray.py", "", "index.stray: in no room"),
])
def test_a_bad_import_is_named(tmp_path, module, line, broken):
    root = write(tmp_path, {**HOUSE, module: HOUSE.get(module, "") + line})
    assert any(broken in problem for problem in broken_rules(root)), broken_rules(root)


@pytest.mark.parametrize("lazy", [False, True])
def test_a_circle_is_found_even_through_a_lazy_or_type_checking_import(tmp_path, lazy):
    back = ("def load():\n    from index.catalog.core import Catalog\n" if lazy else
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from index.catalog.core import Catalog\n")
    forth = HOUSE["index/catalog/core.py"] + "from index.catalog import spaces\n"
    root = write(tmp_path, {**HOUSE, "index/catalog/spaces.py": back, "index/catalog/core.py": forth})
    assert cycles(root) == [["index.catalog.core", "index.catalog.spaces"]]
