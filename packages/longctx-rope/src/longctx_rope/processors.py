"""Qwen-VL processors that work without torchvision.

transformers 5 builds Qwen video processors on torchvision; where it is missing, the real
processor classes cannot even be constructed (their video_processor argument is mandatory) and
``AutoProcessor.from_pretrained`` fails. The image-only subclasses below are the real classes
minus that argument: text and image processing, token expansion and mm_token_type_ids are the
inherited code. They are registered with AutoProcessor (under private keys, so real checkpoints
keep resolving to the real classes) when this module is imported.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoProcessor,
    AutoTokenizer,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen3VLProcessor,
)


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2_5_VLProcessor without a video processor."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3VLProcessor without a video processor."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


IMAGE_ONLY_PROCESSORS: dict[str, type[ProcessorMixin]] = {
    "qwen2_5_vl": ImageOnlyQwen2_5_VLProcessor,
    "qwen3_vl": ImageOnlyQwen3VLProcessor,
}
"""config.model_type -> image-only processor class."""

for _model_type, _cls in IMAGE_ONLY_PROCESSORS.items():
    AutoProcessor.register(f"longctx_rope_image_only_{_model_type}", _cls, exist_ok=True)


def load_processor(model_dir: str | os.PathLike[str], **kwargs: Any) -> ProcessorMixin:
    """``AutoProcessor.from_pretrained(model_dir)``, falling back to the image-only processor of
    the checkpoint's family when the real one cannot be built here: without torchvision the
    video processor fails to import, or (no video config saved) to load."""
    try:
        processor: ProcessorMixin = AutoProcessor.from_pretrained(model_dir, **kwargs)
        return processor
    except (ImportError, OSError):
        model_type = AutoConfig.from_pretrained(model_dir).model_type
        if model_type not in IMAGE_ONLY_PROCESSORS:
            raise
    cls = IMAGE_ONLY_PROCESSORS[model_type]
    return cls(
        image_processor=AutoImageProcessor.from_pretrained(model_dir, **kwargs),
        tokenizer=AutoTokenizer.from_pretrained(model_dir, **kwargs),
    )
