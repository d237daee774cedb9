"""`mmprolong-schemas`: export JSON Schemas and check record files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from mmprolong_runtime.cli_app import package_app
from mmprolong_schemas import (
    RECORD_MODELS,
    SCHEMA_VERSION,
    Record,
    SchemaError,
    __version__,
    read_jsonl,
    read_parquet,
)

app = package_app(
    "mmprolong-schemas",
    __version__,
    help="Typed records of the MMProLong toolkit: export their JSON Schemas, validate files.",
)
console = Console(stderr=True, soft_wrap=True)

ModelName = Annotated[
    str, typer.Option("--model", "-m", help=f"Record type, one of: {', '.join(RECORD_MODELS)}.")
]


def _model(name: str) -> type[Record]:
    if name not in RECORD_MODELS:
        raise typer.BadParameter(
            f"unknown record type {name!r}; choose from {', '.join(RECORD_MODELS)}"
        )
    return RECORD_MODELS[name]


@app.command("json-schema")
def json_schema(
    model: Annotated[
        str | None, typer.Argument(help="One record type; all of them when left out.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write <Model>.schema.json files into this folder instead of stdout."),
    ] = None,
) -> None:
    """Print or write the JSON Schema of the records (schema version included)."""
    names = [model] if model else list(RECORD_MODELS)
    schemas = {name: _model(name).model_json_schema() for name in names}
    for schema in schemas.values():
        schema["$comment"] = f"mmprolong-schemas {SCHEMA_VERSION}"
    if out is None:
        typer.echo(json.dumps(schemas[names[0]] if model else schemas, indent=2))
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    console.print(f"wrote {len(schemas)} schema(s) to {out}")


@app.command()
def validate(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A .jsonl or .parquet file.")
    ],
    model: ModelName,
    max_errors: Annotated[int, typer.Option(help="Stop listing problems after this many.")] = 20,
) -> None:
    """Check that every record in a file is a valid MODEL; list the problems in words."""
    cls = _model(model)
    problems: list[SchemaError] = []
    good = 0
    try:
        records: Iterator[Record]
        if path.suffix == ".parquet":
            records = read_parquet(path, cls)
        else:
            records = read_jsonl(path, cls, on_error=problems.append)
        for _ in records:
            good += 1
    except SchemaError as error:
        problems.append(error)
    for problem in problems[:max_errors]:
        console.print(f"[red]invalid[/red] {escape(str(problem))}")
    if len(problems) > max_errors:
        console.print(f"... and {len(problems) - max_errors} more")
    console.print(f"{good} valid {model} record(s), {len(problems)} problem(s)")
    raise typer.Exit(1 if problems else 0)


if __name__ == "__main__":
    app()
