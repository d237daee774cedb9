"""Token counts with binary prefixes, as the recipe writes them: 128K = 131072, 5B = 5 * 2**30."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

K = 2**10
M = 2**20
B = 2**30

_PREFIX = {"": 1, "K": K, "M": M, "B": B, "G": B}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBG]?)\s*$", re.IGNORECASE)


def parse_tokens(value: str | int | float) -> int:
    """Parse "128K", "4M", "5B" or a plain number into a token count.

    Fractions are allowed where they give a whole number ("0.5K" = 512).
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a token count")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number of tokens")
        return int(value)
    match = _PATTERN.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a token count; write e.g. 131072, '128K', '4M' or '5B'")
    number, prefix = match.groups()
    total = float(number) * _PREFIX[prefix.upper()]
    if not total.is_integer():
        raise ValueError(f"{value!r} is not a whole number of tokens")
    return int(total)


def format_tokens(count: int) -> str:
    """The shortest exact binary-prefixed spelling: 131072 -> "128K", 5368709120 -> "5B"."""
    for suffix, size in (("B", B), ("M", M), ("K", K)):
        if count and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


def _parse_token_count(value: object) -> object:
    return parse_tokens(value) if isinstance(value, str | float) else value


TokenCount = Annotated[int, BeforeValidator(_parse_token_count)]
"""An int field that also accepts "128K"-style strings in JSON and TOML."""
