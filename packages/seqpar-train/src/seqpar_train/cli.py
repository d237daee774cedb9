"""`seqpar-train` command line."""

from __future__ import annotations

import typer

from seqpar_train import __version__

app = typer.Typer(help="LongPT trainer: Ulysses SP + FSDP2 + varlen attention.", no_args_is_help=True, add_completion=False)


@app.callback(invoke_without_command=True)
def main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"seqpar-train {__version__}")
        raise typer.Exit()


if __name__ == "__main__":
    app()
