"""`qasynth` command line."""

from __future__ import annotations

import typer

from qasynth import __version__

app = typer.Typer(help="Document pool to long-context training samples.", no_args_is_help=True, add_completion=False)


@app.callback(invoke_without_command=True)
def main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"qasynth {__version__}")
        raise typer.Exit()


if __name__ == "__main__":
    app()
