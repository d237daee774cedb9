"""`lvlm-judge` command line."""

from __future__ import annotations

import typer

from lvlm_judge import __version__

app = typer.Typer(
    help="Long-context VLM evaluation and judging.", no_args_is_help=True, add_completion=False
)


@app.callback(invoke_without_command=True)
def main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"lvlm-judge {__version__}")
        raise typer.Exit()


if __name__ == "__main__":
    app()
