"""Literals read out of an upstream checkout's Python files with ``ast``: nothing there is
imported or run. MMLongBench's prompts (``mmlb_source``) and VTCBench's Memory judge
(``vtc_judge``) are read this way. A file, function or name that is not there is an error
naming what was looked for, so a changed upstream layout never falls back to other wording."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

from mmprolong_runtime.errors import InputError


class UpstreamSourceError(InputError):
    """A checkout does not hold what the upstream layout puts there."""


def parse_file(path: Path, error: type[UpstreamSourceError], expected: str) -> ast.Module:
    """``path`` parsed; ``expected`` says what the checkout option must name, for the error
    when the file is not there."""
    if not path.is_file():
        raise error(f"{path}: not found; {expected}")
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as syntax:
        raise error(f"{path}: cannot be parsed ({syntax.msg})") from None


def find_function(
    module: ast.Module, names: Sequence[str], path: Path, error: type[UpstreamSourceError]
) -> ast.FunctionDef:
    """The first function named ``names[0]``, else ``names[1]``, ... (older layouts last)."""
    functions = [node for node in ast.walk(module) if isinstance(node, ast.FunctionDef)]
    for name in names:
        for function in functions:
            if function.name == name:
                return function
    raise error(f"{path}: no function {' or '.join(names)}")


def string_of(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def constant_of(node: ast.AST) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def assigned_strings(body: Sequence[ast.stmt]) -> dict[str, str]:
    """Names assigned a string literal by the statements of ``body`` (a module's or a
    function's own, not those of nested blocks)."""
    found: dict[str, str] = {}
    for statement in body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], string_of(statement.value)
            if isinstance(target, ast.Name) and value is not None:
                found[target.id] = value
    return found
