"""The command-line conventions every toolkit CLI shares, in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer


def package_app(
    name: str,
    version: str,
    help: str,
    *,
    on_start: Callable[[], None] | None = None,
    **options: Any,
) -> typer.Typer:
    """A Typer app that shows its help when called bare, installs no shell completion, and
    answers ``--version`` with "<name> <version>" and never prints locals in a traceback.
    ``on_start`` runs before any command."""
    # A crash never prints local variables (API keys): some typer versions show them.
    options.setdefault("pretty_exceptions_show_locals", False)
    app = typer.Typer(help=help, no_args_is_help=True, add_completion=False, **options)

    @app.callback(invoke_without_command=True)
    def main(
        show_version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    ) -> None:
        if show_version:
            typer.echo(f"{name} {version}")
            raise typer.Exit()
        if on_start is not None:
            on_start()

    return app
