"""The base class of every record, and plain-word validation errors."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from mmprolong_schemas.version import SCHEMA_VERSION, check_schema_version

ModelT = TypeVar("ModelT", bound=BaseModel)


class Model(BaseModel):
    """Strict about unknown fields and non-finite floats: a typo in a recipe is an error."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_enum_values=False)


class Record(Model):
    """A top-level record, written to JSONL or Parquet on its own."""

    schema_version: Annotated[str, AfterValidator(check_schema_version)] = Field(
        default=SCHEMA_VERSION, description="Version of mmprolong-schemas that wrote the record."
    )


def record_json_schema(model: type[Record]) -> dict[str, Any]:
    """A record's JSON Schema, stamped with the schema version it describes."""
    schema = model.model_json_schema()
    schema["$comment"] = f"mmprolong-schemas {SCHEMA_VERSION}"
    return schema


class SchemaError(ValueError):
    """Input that does not validate, with the place it came from and every problem in words."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def explain(error: ValidationError) -> list[str]:
    """Turn a pydantic error into sentences such as "evidence_pages: evidence page 41 is
    outside segment 12-20" without pydantic's type codes and URLs."""
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        if item["type"] == "extra_forbidden":
            message = "is not a known field"
        elif item["type"] == "missing":
            message = "is required"
        got = item.get("input")
        if item["type"] not in ("missing", "value_error", "extra_forbidden") and _short(got):
            message = f"{message} (got {got!r})"
        problems.append(f"{where}: {message}" if where else message)
    return problems


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 60


def validate_record(model: type[ModelT], data: Any, source: str) -> ModelT:
    """Validate ``data`` as ``model``; on failure raise SchemaError naming ``source``."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise SchemaError(source, explain(error)) from None
