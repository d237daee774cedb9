"""A Sample (chat messages referencing pool pages, and a target) to model inputs.

``length``, ``length_and_cuts`` and ``plan`` are exact and render nothing: each page's image
grid follows from its size in points (stored in the pool), the DPI and the processor's
min/max pixels, which is what lets every rank plan the packing of a window, and the SP ranks
of a row split its images between them, without rendering a single page. ``encode`` renders
every page and runs the Qwen processor; ``pixels`` renders only the images an SP rank will
encode. Both agree with the plan, which is checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mmprolong_runtime.errors import InputError
from mmprolong_schemas import ImagePart, PagePart, Sample, TextPart, VisionTokenSpec, image_tokens
from mmprolong_schemas.vision_tokens import pixels_at_dpi, smart_resize
from seqpar_train.batch import IGNORE_INDEX

END_OF_TURN = "<|im_end|>\n"


class SampleError(InputError):
    """A sample that cannot be encoded (missing document, broken PDF, missing image)."""


@dataclass
class EncodedSample:
    input_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None


@dataclass
class PlannedSample:
    """A sample's tokens and image grids, known before any page is rendered."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    image_grid_thw: torch.Tensor | None  # (images, 3): t, h, w in patches


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
        self.pages_rendered = 0  # by this process: SP ranks render only their share

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

    def _image_size(self, part: PagePart | ImagePart) -> tuple[int, int]:
        """(height, width) in pixels of the image before the processor resizes it."""
        if isinstance(part, PagePart):
            try:
                document = self.pool.get(part.doc_id)
            except KeyError as error:
                raise SampleError(str(error)) from None
            if not 1 <= part.page <= len(document.pages):
                raise SampleError(f"document {part.doc_id[:12]} has no page {part.page}")
            page = document.pages[part.page - 1]
            return pixels_at_dpi(page.height, self.spec.dpi), pixels_at_dpi(
                page.width, self.spec.dpi
            )
        try:
            with Image.open(self._image_path(part)) as image:
                width, height = image.size
        except OSError as error:
            raise SampleError(f"image {part.path!r} cannot be read ({error})") from None
        return height, width

    def _part_tokens(self, part: PagePart | ImagePart) -> int:
        return image_tokens(*self._image_size(part), self.spec)

    def _grid(self, part: PagePart | ImagePart) -> list[int]:
        patch = int(self.processor.image_processor.patch_size)
        merge = int(self.processor.image_processor.merge_size)
        if patch * merge != self.spec.factor:
            raise ValueError(
                f"the vision spec's factor {self.spec.factor} is not the processor's patch "
                f"size x merge size ({patch} x {merge})"
            )
        spec = self.spec
        height, width = smart_resize(
            *self._image_size(part), spec.factor, spec.min_pixels, spec.max_pixels
        )
        return [1, height // patch, width // patch]

    @property
    def image_token_id(self) -> int:
        token_id: int = self.processor.tokenizer.convert_tokens_to_ids(self.processor.image_token)
        return token_id

    @property
    def patch_dim(self) -> int:
        """Values per row of pixel_values: channels x temporal patch x patch x patch."""
        image_processor = self.processor.image_processor
        return 3 * int(image_processor.temporal_patch_size) * int(image_processor.patch_size) ** 2

    def _tokens(self, text: str) -> list[int]:
        ids: list[int] = self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def length(self, sample: Sample) -> int:
        """Exact token count of the encoded sample, without rendering."""
        return self.length_and_cuts(sample, cuts=False)[0]

    def length_and_cuts(
        self, sample: Sample, cuts: bool = True
    ) -> tuple[int, list[tuple[int, int]]]:
        """The sample's exact token count and, with ``cuts``, (page, exact tokens) of the
        sample cut after each page it may be cut after (``Sample.cut_after`` up to its
        second-to-last page), from one tokenisation and without rendering.

        Cutting after the k-th image leaves out the prompt tokens from just after its
        placeholder to the last image's placeholder (the later images, their wrappers and
        whatever text lies between them), and the later images' expansions."""
        parts = self._image_parts(sample)
        prompt = self._tokens(self._prompt(sample))
        expanded = [self._part_tokens(part) for part in parts]
        whole = len(prompt) + sum(expanded) - len(parts)
        whole += len(self._tokens(sample.target + END_OF_TURN))
        if not cuts or sample.cut_after is None or any(isinstance(p, ImagePart) for p in parts):
            return whole, []  # only document pages are cut
        at = [i for i, token in enumerate(prompt) if token == self.image_token_id]
        if len(at) != len(parts):
            raise SampleError(
                f"sample {sample.sample_id}: the chat template made {len(at)} image "
                f"placeholders for {len(parts)} images"
            )
        last = len(parts) - 1
        lengths, later = [], 0
        for k in range(last - 1, -1, -1):
            page = sample.pages[k]
            if page < sample.cut_after:
                break
            later += expanded[k + 1]
            left_out = at[last] - at[k] - (last - k) + later
            lengths.append((page, whole - left_out))
        return whole, lengths[::-1]

    def plan(self, sample: Sample) -> PlannedSample:
        """Token ids, labels and image grids of the encoded sample, without rendering: the
        processor's expansion of every image placeholder, done from the planned grids."""
        grids = [self._grid(part) for part in self._image_parts(sample)]
        prompt_ids = torch.tensor(self._tokens(self._prompt(sample)), dtype=torch.long)
        is_image = prompt_ids == self.image_token_id
        if int(is_image.sum()) != len(grids):
            raise SampleError(
                f"sample {sample.sample_id}: the chat template made {int(is_image.sum())} "
                f"image placeholders for {len(grids)} images"
            )
        merge = int(self.processor.image_processor.merge_size)
        repeats = torch.ones_like(prompt_ids)
        repeats[is_image] = torch.tensor(
            [h * w // (merge * merge) for _, h, w in grids], dtype=torch.long
        )
        prompt_ids = torch.repeat_interleave(prompt_ids, repeats)
        answer_ids = torch.tensor(self._tokens(sample.target + END_OF_TURN), dtype=torch.long)
        return PlannedSample(
            input_ids=torch.cat([prompt_ids, answer_ids]),
            labels=torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), answer_ids]),
            image_grid_thw=torch.tensor(grids, dtype=torch.long) if grids else None,
        )

    def _images(self, sample: Sample, wanted: Sequence[bool] | None = None) -> list[Image.Image]:
        """The sample's images in order, rendered now; only those flagged in ``wanted``."""
        images: list[Image.Image] = []
        pages: list[int] = []

        def flush() -> None:
            if pages:
                assert sample.doc_id is not None
                images.extend(self.pool.render(sample.doc_id, list(pages), dpi=self.spec.dpi))
                self.pages_rendered += len(pages)
                pages.clear()

        for index, part in enumerate(self._image_parts(sample)):
            if wanted is not None and not wanted[index]:
                continue
            if isinstance(part, PagePart):
                pages.append(part.page)
            else:
                flush()
                with Image.open(self._image_path(part)) as image:
                    images.append(image.convert("RGB"))
        flush()
        return images

    def _render(self, sample: Sample, wanted: Sequence[bool] | None = None) -> list[Image.Image]:
        try:
            return self._images(sample, wanted)
        except SampleError:
            raise
        except Exception as error:  # PyMuPDF and Pillow raise many types for broken files
            raise SampleError(
                f"sample {sample.sample_id}: pages of {str(sample.doc_id)[:12]} cannot be "
                f"rendered ({type(error).__name__}: {error})"
            ) from None

    def pixels(
        self, sample: Sample, wanted: Sequence[bool], planned: PlannedSample
    ) -> torch.Tensor | None:
        """pixel_values of the sample's images flagged in ``wanted`` (in order), rendering
        only those; None when none is wanted. Raises SampleError when they cannot be rendered
        or the processor resizes them differently from ``planned``."""
        if not any(wanted):
            return None
        images = self._render(sample, wanted)
        inputs = self.processor.image_processor(images=images, return_tensors="pt")
        assert planned.image_grid_thw is not None
        expected = planned.image_grid_thw[torch.tensor(list(wanted), dtype=torch.bool)]
        if not torch.equal(inputs["image_grid_thw"].to(expected.dtype), expected):
            raise SampleError(
                f"sample {sample.sample_id}: the processor resized its images to "
                f"{inputs['image_grid_thw'].tolist()}, the plan says {expected.tolist()}"
            )
        pixel_values: torch.Tensor = inputs["pixel_values"]
        return pixel_values

    def encode(self, sample: Sample) -> EncodedSample:
        """Render every image and run the processor on the whole sample."""
        images = self._render(sample)
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
