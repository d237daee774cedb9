"""Short-context instruction data for demo recipes, in LLaVA-OneVision's JSON format.

A demo recipe downloads nothing, so its SFT stage trains on a small generated set instead of
LLaVA-OneVision: chat records about generated pictures (the colour or number of shapes drawn,
images beside the JSON as the real data keeps them) and text-only ones (arithmetic, unit
conversions; some with two turns), which qasynth reads exactly as it reads the real files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from mmprolong_schemas.io import atomic_path

_UNITS = (("kilometres", "metres", 1000), ("hours", "minutes", 60), ("kilograms", "grams", 1000))
_WORDS = ("invoice", "chapter", "figure", "appendix", "table", "summary", "footnote", "margin")
_COLOURS = {"red": (200, 30, 30), "green": (30, 160, 60), "blue": (40, 70, 200)}
IMAGE_DIR = "images"


def _turns(rng: random.Random) -> list[tuple[str, str]]:
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        return [(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.")]
    if kind == 1:
        big, small, factor = rng.choice(_UNITS)
        amount = rng.randint(2, 12)
        return [(f"How many {small} are in {amount} {big}?", f"{amount * factor} {small}.")]
    if kind == 2:
        word = rng.choice(_WORDS)
        return [(f"How many letters does the word '{word}' have?", f"It has {len(word)} letters.")]
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    return [
        (f"Multiply {a} by {b}.", f"{a} times {b} is {a * b}."),
        ("And add one to that?", f"{a * b + 1}."),
    ]


def _picture(rng: random.Random) -> tuple[Image.Image, list[tuple[str, str]]]:
    """A white picture with a few squares of one colour, and a question about it."""
    colour = rng.choice(sorted(_COLOURS))
    count = rng.randint(1, 4)
    image = Image.new("RGB", (112, 84), "white")
    draw = ImageDraw.Draw(image)
    for index in range(count):
        left = 6 + 26 * index
        draw.rectangle((left, 30, left + 20, 50), fill=_COLOURS[colour])
    if rng.random() < 0.5:
        return image, [("<image>\nWhat colour are the squares?", f"They are {colour}.")]
    return image, [("<image>\nHow many squares are drawn?", f"{count}.")]


def demo_short_records(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` LLaVA-style records ``{"id", ["image",] "conversations": [...]}``; every
    other one asks about a picture, ``images/demo-short-N.png`` (written by
    ``write_demo_short_data``)."""
    return [record for record, _ in _records(count, seed)]


def _records(count: int, seed: int) -> list[tuple[dict[str, Any], Image.Image | None]]:
    rng = random.Random(seed)
    records: list[tuple[dict[str, Any], Image.Image | None]] = []
    for number in range(count):
        record: dict[str, Any] = {"id": f"demo-short-{number}"}
        image: Image.Image | None = None
        if number % 2:
            image, turns = _picture(rng)
            record["image"] = f"{IMAGE_DIR}/demo-short-{number}.png"
        else:
            turns = _turns(rng)
        record["conversations"] = [
            {"from": role, "value": text}
            for question, answer in turns
            for role, text in (("human", question), ("gpt", answer))
        ]
        records.append((record, image))
    return records


def write_demo_short_data(path: Path, count: int, seed: int = 0) -> Path:
    """Write the records as one JSON list and their pictures beside it (kept when already
    there: they are deterministic)."""
    if not path.exists():
        records = _records(count, seed)
        for record, image in records:
            if image is not None:
                with atomic_path(path.parent / record["image"]) as tmp:
                    image.save(tmp, format="PNG")
        with atomic_path(path) as tmp:
            text = json.dumps([record for record, _ in records], indent=1)
            tmp.write_text(text, encoding="utf-8")
    return path
