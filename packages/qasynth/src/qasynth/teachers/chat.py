"""Chat messages for a prompt: OpenAI-style with image URLs (the openai backend), or with
bare image placeholders for a chat template (the vllm backend)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mmprolong_schemas import PagePart
from qasynth.page_images import DataURI
from qasynth.prompts import Prompt


def chat_messages(prompt: Prompt, image_urls: Sequence[str]) -> list[dict[str, Any]]:
    """System turn and one user turn whose pages are ``image_url`` parts, in prompt order."""
    pages = prompt.page_parts
    if len(image_urls) != len(pages):
        raise ValueError(f"{len(image_urls)} images given for {len(pages)} pages of the prompt")
    urls = iter(image_urls)
    content: list[dict[str, Any]] = []
    for part in prompt.parts:
        if isinstance(part, PagePart):
            content.append({"type": "image_url", "image_url": {"url": next(urls)}})
        else:
            content.append({"type": "text", "text": part.text})
    return [
        {"role": "system", "content": prompt.system},
        {"role": "user", "content": content},
    ]


def template_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The same conversation with each page as a bare ``{"type": "image"}`` part, for a chat
    template to render as the model's vision placeholder (Qwen2.5-VL and Qwen3-VL templates:
    ``<|vision_start|><|image_pad|><|vision_end|>``); the pixels travel apart, in order."""
    content: list[dict[str, Any]] = [
        {"type": "image"} if isinstance(part, PagePart) else {"type": "text", "text": part.text}
        for part in prompt.parts
    ]
    return [
        {"role": "system", "content": prompt.system},
        {"role": "user", "content": content},
    ]


_PLACEHOLDER = "@@qasynth-image-{}@@"


def encode_body(body: dict[str, Any]) -> bytes:
    """``json.dumps(body).encode()``, fast for megabytes of images.

    ``DataURI`` strings are base64 made by ``qasynth.page_images`` and need no JSON escaping, so
    they are swapped for placeholders, the small remainder is serialised, and the URIs are
    spliced back in as bytes: the JSON encoder never scans the image data.
    """
    urls: list[bytes] = []

    def swap(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, DataURI):
            urls.append(value.ascii)
            return _PLACEHOLDER.format(len(urls) - 1)
        return value

    text = json.dumps(swap(body), ensure_ascii=False).encode()
    pieces = text.split(b'"@@qasynth-image-')
    out = [pieces[0]]
    for piece in pieces[1:]:
        number, rest = piece.split(b'@@"', 1)
        out += [b'"', urls[int(number)], b'"', rest]
    return b"".join(out)
