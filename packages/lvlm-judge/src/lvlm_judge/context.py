"""Pixels and token counts of an item's context parts.

ImageParts are files under an image root (MMLongBench's page images, NIAH images); PageParts
are pages of a docpool pool, rendered when needed. Token counts use the image formula of the
model under test (mmprolong_schemas.image_tokens / page_tokens) without decoding pixels: an
image's size is read from its header, a page's from the pool's metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from mmprolong_schemas import (
    Document,
    ImagePart,
    PagePart,
    TextPart,
    VisionTokenSpec,
    image_tokens,
    page_tokens,
)
from mmprolong_schemas.sample import Part
from mmprolong_schemas.vision_tokens import IMAGE_WRAPPER_TOKENS

TextTokenizer = Callable[[str], int]
"""Counts the LLM tokens of a text."""


class PoolLike(Protocol):
    """What lvlm-judge needs of a docpool pool."""

    def get(self, doc_id: str) -> Document: ...

    def render(self, doc_id: str, pages: list[int], dpi: float = 144) -> list[Image.Image]: ...


class MissingImageError(FileNotFoundError):
    """An image the data names is not under the image root."""


def open_pool(path: str | Path) -> PoolLike:
    """A docpool pool; needs the optional ``pool`` extra (pip install 'lvlm-judge[pool]')."""
    try:
        import docpool
    except ImportError as error:
        raise ImportError(
            "reading a docpool pool needs docpool: pip install 'lvlm-judge[pool]'"
        ) from error
    pool: Any = docpool.Pool(path)  # type: ignore[attr-defined,unused-ignore]
    return pool  # type: ignore[no-any-return,unused-ignore]


def resolve_image(image_root: Path, relative: str) -> Path:
    """The file of an ImagePart; the path must stay inside the image root."""
    root = image_root.resolve()
    path = (root / relative).resolve()
    if root not in path.parents and path != root:
        raise MissingImageError(f"image path {relative!r} leaves the image root {image_root}")
    if not path.is_file():
        raise MissingImageError(f"image {relative!r} is missing: no file {path}")
    return path


class ContextResolver:
    """Loads and measures context parts for one dataset source."""

    def __init__(
        self,
        image_root: str | Path | None = None,
        pool: PoolLike | None = None,
        spec: VisionTokenSpec | None = None,
    ):
        self.image_root = Path(image_root) if image_root is not None else None
        self.pool = pool
        self.spec = spec or VisionTokenSpec()
        self._image_size = lru_cache(maxsize=65536)(self._read_image_size)
        self._documents: dict[str, Document] = {}

    def _root(self) -> Path:
        if self.image_root is None:
            raise MissingImageError("the data has image files but no image root was given")
        return self.image_root

    def _read_image_size(self, relative: str) -> tuple[int, int]:
        with Image.open(resolve_image(self._root(), relative)) as image:
            return image.size

    def document(self, doc_id: str) -> Document:
        if self.pool is None:
            raise ValueError(f"page of document {doc_id[:12]} needs a pool, but none was given")
        if doc_id not in self._documents:
            self._documents[doc_id] = self.pool.get(doc_id)
        return self._documents[doc_id]

    def check(self, part: Part) -> None:
        """Raise if the part's pixels cannot be had (missing file, unknown page)."""
        if isinstance(part, ImagePart):
            resolve_image(self._root(), part.path)
        elif isinstance(part, PagePart):
            self.document(part.doc_id).page(part.page)

    def tokens(self, part: Part, text_tokens: TextTokenizer | None = None) -> int:
        """LLM tokens of one part: images by the vision formula, text by ``text_tokens``."""
        if isinstance(part, ImagePart):
            width, height = self._image_size(part.path)
            return image_tokens(height, width, self.spec) + IMAGE_WRAPPER_TOKENS
        if isinstance(part, PagePart):
            page = self.document(part.doc_id).page(part.page)
            return page_tokens(page.width, page.height, self.spec)
        if text_tokens is None:
            raise ValueError("counting text tokens needs a text tokenizer")
        return text_tokens(part.text)

    def load(self, part: ImagePart | PagePart) -> Image.Image:
        """The part's pixels as an RGB image."""
        if isinstance(part, ImagePart):
            with Image.open(resolve_image(self._root(), part.path)) as opened:
                return opened.convert("RGB")
        if self.pool is None:
            raise ValueError(
                f"page of document {part.doc_id[:12]} needs a pool, but none was given"
            )
        (image,) = self.pool.render(part.doc_id, [part.page], dpi=self.spec.dpi)
        return image.convert("RGB")


def is_visual(part: Part) -> bool:
    return not isinstance(part, TextPart)
