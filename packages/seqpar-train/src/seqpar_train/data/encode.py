"""A Sample (chat messages referencing pool pages, and a target) to model inputs.

``length`` is exact and renders nothing: each page's token count follows from its size in
points (stored in the pool), the DPI and the processor's min/max pixels, which is what lets
every rank plan the packing of a window without rendering a single page. ``encode`` renders
the pages and runs the Qwen processor; its length always equals the planned one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mmprolong_schemas import (
    ImagePart,
    PagePart,
    Sample,
    TextPart,
    VisionTokenSpec,
    image_tokens,
    page_tokens,
)
from seqpar_train.batch import IGNORE_INDEX

END_OF_TURN = "<|im_end|>\n"


class SampleError(ValueError):
    """A sample that cannot be encoded (missing document, broken PDF, missing image)."""


@dataclass
class EncodedSample:
    input_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None


def configure_processor(processor: Any, spec: VisionTokenSpec) -> Any:
    """Make the processor resize exactly as ``spec`` says (explicit min/max pixels)."""
    image_processor = processor.image_processor
    image_processor.size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    for name, value in (("min_pixels", spec.min_pixels), ("max_pixels", spec.max_pixels)):
        if hasattr(image_processor, name):
            setattr(image_processor, name, value)
    return processor


class SampleEncoder:
    def __init__(
        self,
        processor: Any,
        spec: VisionTokenSpec,
        pool_dir: str | Path,
        image_root: Path | None = None,
    ) -> None:
        self.processor = configure_processor(processor, spec)
        self.spec = spec
        self.pool_dir = Path(pool_dir)
        self.image_root = image_root
        self._pool: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"] = None  # reopened in each worker process
        return state

    @property
    def pool(self) -> Any:
        if self._pool is None:
            from docpool import Pool

            self._pool = Pool(self.pool_dir)
        return self._pool

    def _messages(self, sample: Sample) -> list[dict[str, Any]]:
        messages = []
        for message in sample.messages:
            content: list[dict[str, Any]] = []
            for part in message.content:
                if isinstance(part, TextPart):
                    content.append({"type": "text", "text": part.text})
                else:
                    content.append({"type": "image"})
            messages.append({"role": message.role, "content": content})
        return messages

    def _prompt(self, sample: Sample) -> str:
        text: str = self.processor.apply_chat_template(
            self._messages(sample), tokenize=False, add_generation_prompt=True
        )
        return text

    def _image_parts(self, sample: Sample) -> list[PagePart | ImagePart]:
        return [
            part
            for message in sample.messages
            for part in message.content
            if isinstance(part, PagePart | ImagePart)
        ]

    def _image_path(self, part: ImagePart) -> Path:
        if self.image_root is None:
            raise SampleError(f"image {part.path!r} needs data.image_root")
        path = (self.image_root / part.path).resolve()
        if self.image_root.resolve() not in path.parents:
            raise SampleError(f"image path {part.path!r} leaves the image root")
        return path

    def _part_tokens(self, part: PagePart | ImagePart) -> int:
        if isinstance(part, PagePart):
            try:
                document = self.pool.get(part.doc_id)
            except KeyError as error:
                raise SampleError(str(error)) from None
            if not 1 <= part.page <= len(document.pages):
                raise SampleError(f"document {part.doc_id[:12]} has no page {part.page}")
            page = document.pages[part.page - 1]
            return page_tokens(page.width, page.height, self.spec, wrappers=False)
        try:
            with Image.open(self._image_path(part)) as image:
                width, height = image.size
        except OSError as error:
            raise SampleError(f"image {part.path!r} cannot be read ({error})") from None
        return image_tokens(height, width, self.spec)

    def _tokens(self, text: str) -> list[int]:
        ids: list[int] = self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def length(self, sample: Sample) -> int:
        """Exact token count of the encoded sample, without rendering."""
        parts = self._image_parts(sample)
        placeholders = sum(self._part_tokens(part) - 1 for part in parts)
        prompt = len(self._tokens(self._prompt(sample))) + placeholders
        return prompt + len(self._tokens(sample.target + END_OF_TURN))

    def _images(self, sample: Sample) -> list[Image.Image]:
        images: list[Image.Image] = []
        pages: list[int] = []

        def flush() -> None:
            if pages:
                assert sample.doc_id is not None
                images.extend(self.pool.render(sample.doc_id, list(pages), dpi=self.spec.dpi))
                pages.clear()

        for part in self._image_parts(sample):
            if isinstance(part, PagePart):
                pages.append(part.page)
            else:
                flush()
                with Image.open(self._image_path(part)) as image:
                    images.append(image.convert("RGB"))
        flush()
        return images

    def encode(self, sample: Sample) -> EncodedSample:
        try:
            images = self._images(sample)
        except SampleError:
            raise
        except Exception as error:  # PyMuPDF and Pillow raise many types for broken files
            raise SampleError(
                f"sample {sample.sample_id}: pages of {str(sample.doc_id)[:12]} cannot be "
                f"rendered ({type(error).__name__}: {error})"
            ) from None
        inputs = self.processor(
            text=[self._prompt(sample)], images=images or None, return_tensors="pt"
        )
        prompt_ids = inputs["input_ids"][0]
        answer_ids = torch.tensor(self._tokens(sample.target + END_OF_TURN))
        input_ids = torch.cat([prompt_ids, answer_ids])
        labels = torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), answer_ids])
        return EncodedSample(
            input_ids=input_ids,
            labels=labels,
            pixel_values=inputs.get("pixel_values") if images else None,
            image_grid_thw=inputs.get("image_grid_thw") if images else None,
        )
