"""`mmprolong-schemas`: export JSON Schemas and check record files.

Written with argparse so the records package needs nothing beyond pydantic and pyarrow.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from mmprolong_schemas import (
    RECORD_MODELS,
    Record,
    SchemaError,
    __version__,
    read_jsonl,
    read_parquet,
)
from mmprolong_schemas.base import record_json_schema
from mmprolong_schemas.io import write_json

PROG = "mmprolong-schemas"


def _model(name: str) -> type[Record]:
    if name not in RECORD_MODELS:
        raise argparse.ArgumentTypeError(
            f"unknown record type {name!r}; choose from {', '.join(RECORD_MODELS)}"
        )
    return RECORD_MODELS[name]


def _existing_file(value: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"file {value!r} does not exist")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is a folder, not a file")
    return path


def json_schema(model: str | None, out: Path | None) -> int:
    """Print or write the JSON Schema of the records (schema version included)."""
    names = [model] if model else list(RECORD_MODELS)
    schemas = {name: record_json_schema(_model(name)) for name in names}
    if out is None:
        print(json.dumps(schemas[names[0]] if model else schemas, indent=2))
        return 0
    if out.exists() and not out.is_dir():
        raise argparse.ArgumentTypeError(f"--out {str(out)!r} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        write_json(out / f"{name}.schema.json", schema, indent=2)
    print(f"wrote {len(schemas)} schema(s) to {out}", file=sys.stderr)
    return 0


def validate(path: Path, model: str, max_errors: int) -> int:
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
        print(f"invalid {problem}", file=sys.stderr)
    if len(problems) > max_errors:
        print(f"... and {len(problems) - max_errors} more", file=sys.stderr)
    print(f"{good} valid {model} record(s), {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


class _OneLineParser(argparse.ArgumentParser):
    """Reports bad usage in one line naming the input, as the toolkit's typer CLIs do."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def parser() -> argparse.ArgumentParser:
    root = _OneLineParser(
        prog=PROG,
        description="Typed records of the MMProLong toolkit: export their JSON Schemas, "
        "validate files.",
    )
    root.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    root.add_argument(
        "--debug",
        action="store_true",
        help="Show the traceback of an input error as well as its line.",
    )
    commands = root.add_subparsers(dest="command", metavar="COMMAND")
    schema = commands.add_parser(
        "json-schema",
        help="Print or write the JSON Schema of the records (schema version included).",
        description=json_schema.__doc__,
    )
    schema.add_argument("model", nargs="?", help="One record type; all of them when left out.")
    schema.add_argument(
        "--out",
        type=Path,
        help="Write <Model>.schema.json files into this folder instead of stdout.",
    )
    check = commands.add_parser(
        "validate",
        help="Check that every record in a file is a valid MODEL; list the problems in words.",
        description=validate.__doc__,
    )
    check.add_argument("path", help="A .jsonl or .parquet file.")
    check.add_argument(
        "--model",
        "-m",
        required=True,
        help=f"Record type, one of: {', '.join(RECORD_MODELS)}.",
    )
    check.add_argument(
        "--max-errors",
        type=int,
        default=20,
        help="Stop listing problems after this many (default: 20).",
    )
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code is 0 when all is well, 1 for invalid records, 2 for bad
    usage (an unknown command, record type or file), with help when called bare."""
    root = parser()
    args = root.parse_args(argv)
    try:
        if args.command == "json-schema":
            return json_schema(args.model, args.out)
        if args.command == "validate":
            return validate(_existing_file(args.path), args.model, args.max_errors)
    except argparse.ArgumentTypeError as error:
        if args.debug:
            traceback.print_exc()
        root.error(str(error))
    root.print_help(sys.stderr)
    return 2


def app() -> None:
    """The console script."""
    sys.exit(main())


if __name__ == "__main__":
    app()
