"""`mmprolong` command line."""

from __future__ import annotations

import typer

from mmprolong import __version__

app = typer.Typer(help="The composed MMProLong pipeline and CLI.", no_args_is_help=True, add_completion=False)


@app.callback(invoke_without_command=True)
def main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"mmprolong {__version__}")
        raise typer.Exit()


if __name__ == "__main__":
    app()
