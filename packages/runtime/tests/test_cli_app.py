"""The shared CLI scaffolding: bad input in one line naming it with exit code 2, a bug with its
traceback, ``--debug`` adding the traceback to an input error."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mmprolong_runtime.cli_app import fail, option_value, package_app
from mmprolong_runtime.errors import InputError
from mmprolong_schemas import SchemaError


def _tool() -> typer.Typer:
    app = package_app("tool", "1.2.3", help="A toy CLI.")

    @app.command()
    def count(value: str = typer.Option("1", help="A count.")) -> None:
        """Parse a count the command reads as text."""
        typer.echo(str(option_value(int, value, "--value")))

    @app.command()
    def open_folder(folder: Path) -> None:
        """Fail the ways a folder argument fails."""
        if folder.name == "missing":
            (folder / "pool.json").read_text()
        if folder.name == "schema":
            raise SchemaError(str(folder), ["line 1: field x is missing"])
        if folder.name == "checked":
            fail(f"{folder} is not a run", exit_code=1)
        if folder.name == "buggy":
            raise ValueError("a bug, not bad input")
        raise InputError(f"{folder} is not a pool\nrun `tool ingest` first")

    @app.command()
    def number(n: int) -> None:
        """Take an integer argument click converts."""
        typer.echo(str(n))

    return app


def _stderr_lines(result: object) -> list[str]:
    return result.stderr.strip().splitlines()  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize(
    ("args", "names", "code"),
    [
        (["count", "--value", "5X"], "'5X'", 2),
        (["number", "5X"], "'n'", 2),
        (["open-folder", "/data/missing"], "/data/missing/pool.json", 2),
        (["open-folder", "/data/schema"], "/data/schema", 2),
        (["open-folder", "/data/checked"], "/data/checked is not a run", 1),
        (["open-folder", "/data/pool"], "/data/pool is not a pool run `tool ingest` first", 2),
        (["--bogus"], "--bogus", 2),
    ],
)
def test_bad_input_is_one_line(args: list[str], names: str, code: int) -> None:
    result = CliRunner().invoke(_tool(), args, prog_name="tool")
    assert result.exit_code == code, result.output
    assert _stderr_lines(result) == [_stderr_lines(result)[0]]
    assert _stderr_lines(result)[0].startswith("tool: error: ")
    assert names in _stderr_lines(result)[0]
    assert "Traceback" not in result.output


def test_debug_adds_the_traceback() -> None:
    result = CliRunner().invoke(_tool(), ["--debug", "open-folder", "/data/pool"], prog_name="tool")
    assert result.exit_code == 2
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "InputError: /data/pool is not a pool" in result.stderr
    assert _stderr_lines(result)[-1].startswith("tool: error: /data/pool is not a pool")


def test_a_bug_keeps_its_traceback() -> None:
    result = CliRunner().invoke(_tool(), ["open-folder", "/data/buggy"], prog_name="tool")
    assert isinstance(result.exception, ValueError)
    assert not isinstance(result.exception, InputError)
    assert "error:" not in result.stderr


def test_version_and_bare_call_unchanged() -> None:
    assert CliRunner().invoke(_tool(), ["--version"]).stdout == "tool 1.2.3\n"
    bare = CliRunner().invoke(_tool(), [])
    assert "Usage" in bare.output and "count" in bare.output
