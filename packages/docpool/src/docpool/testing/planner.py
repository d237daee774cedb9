"""What each document of a corpus will be before it is written: language, page size, outline,
page count, and how the body pages are shared between sections. Deterministic in the seed."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class DocPlan:
    index: int
    lang: str
    has_outline: bool
    num_pages: int
    size: tuple[float, float]


def plan_document(index: int, seed: int, pages: tuple[int, int], langs: Sequence[str]) -> DocPlan:
    rng = random.Random(f"plan-{seed}-{index}")
    others = [lang for lang in langs if lang != "en"]
    if "en" not in langs:
        lang = langs[index % len(langs)]
    elif others and index % 4 == 3:
        lang = others[(index // 4) % len(others)]
    else:
        lang = "en"
    # A4 for the continental documents, US Letter otherwise: two real page sizes in the corpus.
    size = (595.0, 842.0) if lang != "en" else (612.0, 792.0)
    return DocPlan(
        index=index,
        lang=lang,
        has_outline=index % 5 != 2,
        num_pages=rng.randint(pages[0], pages[1]),
        size=size,
    )


def split_pages(total: int, parts: int, rng: random.Random) -> list[int]:
    """``total`` pages in ``parts`` budgets of at least two pages each, roughly even."""
    parts = max(1, min(parts, total // 2))
    budgets = [total // parts] * parts
    for index in range(total - sum(budgets)):
        budgets[index % parts] += 1
    for _ in range(parts):  # uneven but never below two pages
        give, take = rng.randrange(parts), rng.randrange(parts)
        if budgets[give] > 3:
            budgets[give] -= 1
            budgets[take] += 1
    return budgets
