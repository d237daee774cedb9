"""Each package's public API (docs/architecture.md): its ``__init__`` exports its stage
functions and main types, every one defined in that package, and no two packages export the
same name; the rest is reached by module path."""

from __future__ import annotations

import importlib
import inspect
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(
    init.parent.name
    for init in [*ROOT.glob("packages/*/src/*/__init__.py"), *ROOT.glob("apps/*/src/*/__init__.py")]
)


def _exports(package: str) -> dict[str, object]:
    """The package's ``__all__`` names and objects, ``__version__`` and other dunders aside
    (every package has its own)."""
    module = importlib.import_module(package)
    return {
        name: getattr(module, name)
        for name in module.__all__
        if not (name.startswith("__") and name.endswith("__"))
    }


def test_every_package_is_checked() -> None:
    assert len(PACKAGES) == 8 and {"mmprolong_schemas", "mmprolong"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    names = module.__all__
    assert len(names) == len(set(names)), f"{package}.__all__ repeats a name"
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_exports_only_its_own_objects(package: str) -> None:
    """Classes and functions by where they are defined; constants and typing aliases, which
    carry no module of their own, by identity against the other packages' exports."""
    elsewhere = {
        id(obj): f"{other}.{name}"
        for other in PACKAGES
        if other != package
        for name, obj in _exports(other).items()
    }
    foreign = {}
    for name, obj in _exports(package).items():
        if inspect.isclass(obj) or inspect.isroutine(obj):
            defined_in = obj.__module__
            if defined_in != package and not defined_in.startswith(f"{package}."):
                foreign[name] = defined_in
        elif id(obj) in elsewhere:
            foreign[name] = elsewhere[id(obj)]
    assert not foreign, f"{package} re-exports objects of other modules: {foreign}"


def test_no_name_is_exported_by_two_packages() -> None:
    exporters: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for name in _exports(package):
            exporters[name].append(package)
    clashes = {name: owners for name, owners in exporters.items() if len(owners) > 1}
    assert not clashes, f"names exported by more than one package: {clashes}"
