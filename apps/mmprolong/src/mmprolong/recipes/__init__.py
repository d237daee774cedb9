"""Recipes shipped with mmprolong, and reading, overriding and writing recipe TOML files.

A recipe argument is either a path to a TOML file or the name of a shipped recipe
("mmprolong-qwen2.5-vl-7b", "demo-tiny", ...), with or without ".toml".
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from mmprolong_schemas import Recipe, SchemaError
from mmprolong_schemas.base import validate_record

SUFFIX = ".toml"


def shipped_recipes() -> dict[str, str]:
    """Name -> TOML text of every recipe shipped inside the package."""
    folder = resources.files(__package__)
    return {
        entry.name.removesuffix(SUFFIX): entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda item: item.name)
        if entry.name.endswith(SUFFIX)
    }


def parse_recipe(text: str, source: str) -> Recipe:
    """Validate TOML text as a Recipe; errors name ``source`` and every bad field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SchemaError(source, [f"not valid TOML ({error})"]) from None
    return validate_record(Recipe, data, source)


def load_recipe(recipe: str | Path) -> Recipe:
    """A recipe from a TOML path or a shipped recipe's name."""
    path = Path(recipe)
    if path.is_file():
        return parse_recipe(path.read_text(encoding="utf-8"), str(path))
    shipped = shipped_recipes()
    name = str(recipe).removesuffix(SUFFIX)
    if name in shipped:
        return parse_recipe(shipped[name], f"{name}{SUFFIX} (shipped)")
    raise FileNotFoundError(
        f"recipe {str(recipe)!r} is neither a file nor a shipped recipe; "
        f"shipped: {', '.join(shipped)}"
    )


def apply_overrides(recipe: Recipe, overrides: dict[str, Any], source: str) -> Recipe:
    """A copy of ``recipe`` with dotted keys set ("rope.base": 8e6), validated again."""
    data = recipe.model_dump(mode="json")
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise SchemaError(source, [f"{dotted}: {part!r} is not a section of the recipe"])
            node = node[part]
        node[leaf] = value  # an unknown leaf is caught by validation (extra fields forbidden)
    return validate_record(Recipe, data, source)


def recipe_to_toml(recipe: Recipe) -> str:
    """The recipe as TOML that ``load_recipe`` reads back to an equal Recipe."""
    text = tomli_w.dumps(_drop_none(recipe.model_dump(mode="json")))
    if parse_recipe(text, recipe.name) != recipe:
        raise ValueError(
            f"recipe {recipe.name!r} has a field set to None whose default is not None; "
            "TOML cannot write it"
        )
    return text


def _drop_none(value: Any) -> Any:
    # TOML has no null: a missing key means "schema default", which is None for those fields.
    if isinstance(value, dict):
        return {key: _drop_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_none(item) for item in value]
    return value


__all__ = ["apply_overrides", "load_recipe", "parse_recipe", "recipe_to_toml", "shipped_recipes"]
