"""`mmprolong-runtime`: read, check and describe the run manifest a stage left beside its
output. RunManifest is a record of this package, so its JSON Schema is exported here, beside
the ten that `mmprolong-schemas json-schema` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from mmprolong_runtime import __version__
from mmprolong_runtime.cli_app import fail, package_app
from mmprolong_runtime.manifest import RunManifest
from mmprolong_schemas.base import explain, record_json_schema
from mmprolong_schemas.io import write_json

MANIFEST_NAMES = ("manifest.json", "run.json")
"""What a folder's manifest is called: the app's stages write manifest.json, lvlm-judge run.json."""

app = package_app(
    "mmprolong-runtime",
    __version__,
    help="How MMProLong stages run: show or check the run manifest a stage wrote.",
)


def _manifest_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for name in MANIFEST_NAMES:
            if (path / name).is_file():
                return path / name
        raise typer.BadParameter(
            f"{path} holds no run manifest ({' or '.join(MANIFEST_NAMES)})", param_hint="PATH"
        )
    raise typer.BadParameter(f"{path} does not exist", param_hint="PATH")


@app.command()
def manifest(
    path: Annotated[
        Path,
        typer.Argument(help="A manifest file, or a run folder holding manifest.json/run.json."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Print what produced an output: tool, status, config hash, versions, git SHA, counts."""
    file = _manifest_file(path)
    try:
        record = RunManifest.model_validate_json(file.read_bytes())
    except ValidationError as error:
        raise typer.BadParameter(
            f"{file} is not a run manifest: {error.errors()[0]['msg']}", param_hint="PATH"
        ) from None
    if as_json:
        typer.echo(record.model_dump_json(indent=2))
        return
    finished = record.finished_at.isoformat() if record.finished_at else "-"
    lines = [
        f"tool         {record.tool}",
        f"status       {record.status}",
        f"config hash  {record.config_hash}",
        f"started      {record.started_at.isoformat()}",
        f"finished     {finished}",
        f"git sha      {record.git_sha or '-'}",
        f"python       {record.python}",
        f"command      {' '.join(record.command) or '-'}",
        *(f"count        {name} = {value}" for name, value in sorted(record.counts.items())),
        *(f"version      {name} {value}" for name, value in record.package_versions.items()),
    ]
    typer.echo("\n".join(lines))


@app.command()
def validate(
    path: Annotated[
        Path,
        typer.Argument(help="A manifest file, or a run folder holding manifest.json/run.json."),
    ],
) -> None:
    """Check that a file is a valid run manifest and list every problem in words (exit code 1
    when there is one)."""
    file = _manifest_file(path)
    try:
        RunManifest.model_validate_json(file.read_bytes())
    except ValidationError as error:
        problems = explain(error)
        for problem in problems:
            typer.echo(f"invalid {file}: {problem}", err=True)
        typer.echo(f"{file} is not a run manifest: {len(problems)} problem(s)", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{file}: a valid run manifest")


@app.command("json-schema")
def json_schema(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write RunManifest.schema.json into this folder (e.g. the one "
            "`mmprolong-schemas json-schema --out` wrote) instead of printing it.",
        ),
    ] = None,
) -> None:
    """Print or write the JSON Schema of RunManifest (schema version included)."""
    schema = record_json_schema(RunManifest)
    if out is None:
        typer.echo(json.dumps(schema, indent=2))
        return
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file, not a folder")
    write_json(out / "RunManifest.schema.json", schema, indent=2)
    typer.echo(f"wrote {out / 'RunManifest.schema.json'}", err=True)


if __name__ == "__main__":
    app()
