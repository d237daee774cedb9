"""Page images for teacher requests: rendered from the pool's PDFs, encoded as JPEG.

Pages are rendered when a request is built, never stored. JPEG (quality 90 by default) is
several times cheaper to encode and to send than PNG, and text stays legible at 144 DPI.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Protocol

from PIL import Image


class PageRenderer(Protocol):
    """Anything that renders pages of a pooled document, such as ``docpool.Pool``."""

    def render(self, doc_id: str, pages: Sequence[int], dpi: float = 144) -> list[Image.Image]: ...


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class DataURI(str):
    """A data URI made here from base64 output: JSON needs no escaping for it, which lets
    request bodies splice it in without scanning it (see ``teachers.chat.encode_body``)."""

    __slots__ = ()


def data_uri(image: Image.Image, quality: int = 90) -> DataURI:
    """The image as a ``data:image/jpeg;base64,...`` URI, as OpenAI-style servers accept."""
    encoded = base64.b64encode(encode_jpeg(image, quality)).decode("ascii")
    return DataURI("data:image/jpeg;base64," + encoded)
