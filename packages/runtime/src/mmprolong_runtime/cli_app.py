"""The command-line conventions every toolkit CLI shares, in one place."""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

from mmprolong_runtime.errors import InputError
from mmprolong_schemas import SchemaError

# Recent typer releases vendor click, older ones use click itself: either way click's
# exceptions live beside BadParameter. A bare call's help is an exception from click 8.2 on.
_click_errors = importlib.import_module(typer.BadParameter.__module__)
_NO_ARGS_IS_HELP: Any = getattr(_click_errors, "NoArgsIsHelpError", ())

INPUT_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    SchemaError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
)
"""Exceptions that mean bad input, not a bug: the CLIs report them in one line."""

Parsed = TypeVar("Parsed")

INPUT_ERROR_EXIT = 2
"""Exit code of a command stopped by bad input (click uses 2 for bad usage too)."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _report(ctx: Any, message: str) -> None:
    typer.echo(f"{ctx.find_root().info_name}: error: {_one_line(message)}", err=True)


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def _usage_message(error: Any) -> str:
    message = error.format_message()
    if isinstance(error, _click_errors.UsageError) and error.ctx is not None:
        message += f" (see '{error.ctx.command_path} --help')"
    return str(message)


class ToolkitGroup(TyperGroup):
    """A command group that reports bad input in one line on stderr, naming the input, with
    exit code 2: click's usage errors and the toolkit's input errors (``INPUT_ERRORS``). A
    bug shows its traceback as before; ``--debug`` shows it for input errors too."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: Any = None,
        **extra: Any,
    ) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _NO_ARGS_IS_HELP:
            raise  # a bare call shows the help, as typer does
        except _click_errors.ClickException as error:
            typer.echo(f"{info_name}: error: {_one_line(_usage_message(error))}", err=True)
            raise typer.Exit(error.exit_code) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _NO_ARGS_IS_HELP:
            raise
        except _click_errors.ClickException as error:
            message, code = _usage_message(error), error.exit_code
            failure: BaseException = error
        except INPUT_ERRORS as error:
            code = error.exit_code if isinstance(error, InputError) else INPUT_ERROR_EXIT
            message, failure = _describe(error), error
        if ctx.params.get("debug"):
            typer.echo("".join(traceback.format_exception(failure)), err=True, nl=False)
        _report(ctx, message)
        raise typer.Exit(code)


def fail(message: str, exit_code: int = INPUT_ERROR_EXIT) -> NoReturn:
    """Stop the running command over bad input it found itself: ToolkitGroup prints
    ``message`` in one line (with the traceback under ``--debug``) and exits with
    ``exit_code``."""
    raise InputError(message, exit_code=exit_code)


def option_value(parse: Callable[[str], Parsed], text: str, option: str) -> Parsed:
    """``parse(text)``, a ValueError reported as a bad value of ``option`` (e.g. "--budget")
    for a command that takes the option as text and parses it itself."""
    try:
        return parse(text)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=option) from error


def package_app(
    name: str,
    version: str,
    help: str,
    *,
    on_start: Callable[[], None] | None = None,
    **options: Any,
) -> typer.Typer:
    """A Typer app that shows its help when called bare, installs no shell completion,
    answers ``--version`` with "<name> <version>", never prints locals in a traceback, and
    reports bad input in one line (``ToolkitGroup``; ``--debug`` adds the traceback).
    ``on_start`` runs before any command."""
    # A crash never prints local variables (API keys): some typer versions show them.
    options.setdefault("pretty_exceptions_show_locals", False)
    app = typer.Typer(
        help=help, no_args_is_help=True, add_completion=False, cls=ToolkitGroup, **options
    )

    @app.callback(invoke_without_command=True)
    def main(
        show_version: bool = typer.Option(False, "--version", help="Print the version and exit."),
        debug: bool = typer.Option(
            False, "--debug", help="Show the traceback of an input error as well as its line."
        ),
    ) -> None:
        # ``debug`` is read by ToolkitGroup.invoke from the context's parameters.
        if show_version:
            typer.echo(f"{name} {version}")
            raise typer.Exit()
        if on_start is not None:
            on_start()

    return app


__all__: Sequence[str] = (
    "INPUT_ERRORS",
    "InputError",
    "ToolkitGroup",
    "fail",
    "option_value",
    "package_app",
)
