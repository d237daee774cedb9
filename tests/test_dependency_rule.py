"""The package graph: schemas (records only) at the bottom, the runtime on it, the app on top,
no cycles, and no package imports a sibling it does not declare (as a dependency or in an
optional extra)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = sorted(
    p.parent for p in [*ROOT.glob("packages/*/pyproject.toml"), *ROOT.glob("apps/*/pyproject.toml")]
)


def _project(folder: Path) -> dict:  # type: ignore[type-arg]
    return tomllib.loads((folder / "pyproject.toml").read_text())["project"]


def _import_name(folder: Path) -> str:
    (package,) = [p.name for p in (folder / "src").iterdir() if (p / "__init__.py").exists()]
    return package


DIST_OF_MODULE = {_import_name(folder): _project(folder)["name"] for folder in PROJECTS}


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
    assert match
    return match.group(0).lower().replace("_", "-")


def _declared(folder: Path, *, extras: bool) -> set[str]:
    project = _project(folder)
    requirements = list(project.get("dependencies", []))
    if extras:
        for name, group in project.get("optional-dependencies", {}).items():
            if name != "test":
                requirements += group
    return {_requirement_name(r) for r in requirements}


def _imported_modules(folder: Path) -> dict[str, list[str]]:
    """Top-level modules imported anywhere in the package's own source (function bodies
    included), with where."""
    found: dict[str, list[str]] = {}
    for source in (folder / "src").rglob("*.py"):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                where = f"{source.relative_to(ROOT)}:{node.lineno}"
                found.setdefault(module.split(".")[0], []).append(where)
    return found


def _imported_siblings(folder: Path) -> dict[str, list[str]]:
    """Workspace distributions imported by the package's own source, with where."""
    own = _import_name(folder)
    return {
        DIST_OF_MODULE[top]: where
        for top, where in _imported_modules(folder).items()
        if top in DIST_OF_MODULE and top != own
    }


@pytest.mark.parametrize("folder", PROJECTS, ids=lambda p: p.name)
def test_no_undeclared_sibling_imports(folder: Path) -> None:
    declared = _declared(folder, extras=True)
    undeclared = {
        dist: where for dist, where in _imported_siblings(folder).items() if dist not in declared
    }
    assert not undeclared, f"{folder.name} imports siblings it does not declare: {undeclared}"


def test_schemas_is_the_bottom_and_depends_on_no_sibling() -> None:
    schemas = ROOT / "packages/schemas"
    assert not (_declared(schemas, extras=True) & set(DIST_OF_MODULE.values()))
    for folder in PROJECTS:
        if folder != schemas:
            assert "mmprolong-schemas" in _declared(folder, extras=False), folder.name


def test_schemas_holds_records_only_on_pydantic_and_pyarrow() -> None:
    schemas = ROOT / "packages/schemas"
    assert _declared(schemas, extras=True) == {"pydantic", "pyarrow"}
    allowed = {"pydantic", "pyarrow", "mmprolong_schemas", *sys.stdlib_module_names}
    foreign = {m: w for m, w in _imported_modules(schemas).items() if m not in allowed}
    assert not foreign, f"mmprolong-schemas imports beyond pydantic, pyarrow and stdlib: {foreign}"


def test_runtime_builds_on_schemas_alone() -> None:
    runtime = ROOT / "packages/runtime"
    workspace = set(DIST_OF_MODULE.values())
    assert _declared(runtime, extras=True) & workspace == {"mmprolong-schemas"}
    assert set(_imported_siblings(runtime)) <= {"mmprolong-schemas"}


def test_nothing_imports_upward() -> None:
    """A package imports only what sits below it: schemas nothing, the runtime schemas, the
    stage packages schemas, the runtime and each other, and no one the app."""
    below = {"mmprolong-schemas": set(), "mmprolong-runtime": {"mmprolong-schemas"}}
    for folder in PROJECTS:
        name = _project(folder)["name"]
        imported = set(_imported_siblings(folder))
        if name in below:
            assert imported <= below[name], f"{name} imports upward: {imported - below[name]}"
        elif name != "mmprolong":
            assert "mmprolong" not in imported, f"{name} imports the app"


def test_the_graph_has_no_cycles() -> None:
    workspace = set(DIST_OF_MODULE.values())
    graph = {_project(f)["name"]: _declared(f, extras=True) & workspace for f in PROJECTS}
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in visiting, f"dependency cycle: {' -> '.join([*path, node])}"
        if node in done:
            return
        visiting.add(node)
        for dep in graph[node]:
            visit(dep, [*path, node])
        visiting.discard(node)
        done.add(node)

    for node in graph:
        visit(node, [])
    assert graph["mmprolong"] >= workspace - {"mmprolong"}, "the app composes every package"
