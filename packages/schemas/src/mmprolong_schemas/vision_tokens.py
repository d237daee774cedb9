"""How many LLM tokens a rendered page costs, computed from its size alone; and the text.

Qwen2.5-VL resizes an image with ``smart_resize`` so both sides are multiples of
``factor`` = patch size 14 x spatial merge 2 = 28 and the area lies in [min_pixels, max_pixels];
every factor x factor cell becomes one token, and the image is wrapped in a vision-start and a
vision-end token. Qwen3-VL uses patch size 16, hence factor 32. Nothing here renders a page.

The text beside the pages is estimated without a tokenizer (``estimate_text_tokens``): about
4 characters per token for Latin-script text (the usual figure for the Qwen2 byte-level BPE on
English prose), one token per CJK character, and a fixed cost for the chat template's role
markers. The text of a long-document sample is a few hundred tokens against 30K-130K image
tokens, so a 20% error in it moves a sample by well under 1%.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from mmprolong_schemas.base import Model

IMAGE_WRAPPER_TOKENS = 2
"""<|vision_start|> and <|vision_end|> around every image."""

POINTS_PER_INCH = 72.0

CHARS_PER_TOKEN = 4.0
"""Latin-script characters per token of the Qwen2 tokenizer, rounded."""

CHAT_TURN_TOKENS = 5
"""<|im_start|>role\\n ... <|im_end|>\\n around every chat turn."""

SYSTEM_TURN_TOKENS = 20
"""The chat template's default system turn ("You are a helpful assistant.") with markers."""

_WIDE = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


class ModelFamily(StrEnum):
    QWEN2_5_VL = "qwen2.5-vl"
    QWEN3_VL = "qwen3-vl"

    @property
    def resize_factor(self) -> int:
        return 28 if self is ModelFamily.QWEN2_5_VL else 32

    @property
    def pixel_limits(self) -> tuple[int, int]:
        """(min_pixels, max_pixels) of the family's released image preprocessor:
        Qwen2.5-VL-7B-Instruct's preprocessor_config (3136 / 12845056) and Qwen3-VL's
        (``size`` shortest_edge 65536, longest_edge 16777216)."""
        return (3136, 12845056) if self is ModelFamily.QWEN2_5_VL else (65536, 16777216)


class VisionTokenSpec(Model):
    """Everything that decides the token count of a page image. min/max pixels are always
    explicit: a checkpoint's preprocessor and a serving engine may disagree on defaults."""

    dpi: float = Field(default=144.0, gt=0, le=1200, description="Render resolution.")
    factor: int = Field(default=28, ge=1, description="Patch size x spatial merge size.")
    min_pixels: int = Field(default=3136, ge=1)
    max_pixels: int = Field(default=12845056, ge=1)

    @model_validator(mode="after")
    def _pixels_ordered(self) -> VisionTokenSpec:
        if self.min_pixels > self.max_pixels:
            raise ValueError(
                f"min_pixels {self.min_pixels} is larger than max_pixels {self.max_pixels}"
            )
        return self

    @classmethod
    def for_family(cls, family: ModelFamily | str, **overrides: Any) -> VisionTokenSpec:
        """The family's factor and preprocessor pixel limits; ``overrides`` given as None
        keep the family's value."""
        family = ModelFamily(family)
        low, high = family.pixel_limits
        values: dict[str, Any] = {
            "factor": family.resize_factor,
            "min_pixels": low,
            "max_pixels": high,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 3136, max_pixels: int = 12845056
) -> tuple[int, int]:
    """The (height, width) the Qwen-VL image processors resize an image to."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size {width}x{height} is empty")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"image {width}x{height} has an aspect ratio above 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_tokens(height: int, width: int, spec: VisionTokenSpec | None = None) -> int:
    """Image-pad tokens for an image of height x width pixels (wrappers not included)."""
    spec = spec or VisionTokenSpec()
    h, w = smart_resize(height, width, spec.factor, spec.min_pixels, spec.max_pixels)
    return (h // spec.factor) * (w // spec.factor)


def pixels_at_dpi(points: float, dpi: float) -> int:
    """Pixel length of a page side rendered at ``dpi``, rounded the way PyMuPDF rounds its
    pixmap rectangle (outward, ignoring a 1/1000 pixel of float noise)."""
    return max(1, math.ceil(points * dpi / POINTS_PER_INCH - 1e-3))


def page_tokens(
    width_pt: float, height_pt: float, spec: VisionTokenSpec | None = None, *, wrappers: bool = True
) -> int:
    """Tokens of one page of the given size in points (as displayed, rotation applied)."""
    spec = spec or VisionTokenSpec()
    tokens = image_tokens(
        pixels_at_dpi(height_pt, spec.dpi), pixels_at_dpi(width_pt, spec.dpi), spec
    )
    return tokens + (IMAGE_WRAPPER_TOKENS if wrappers else 0)


def estimate_text_tokens(text: str) -> int:
    """Estimated tokens of ``text``: CJK characters count one each, the rest 4 per token."""
    if not text:
        return 0
    wide = len(_WIDE.findall(text))
    return wide + math.ceil((len(text) - wide) / CHARS_PER_TOKEN)
