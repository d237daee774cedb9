"""longctx-rope: (m)RoPE extension of Qwen-VL checkpoints, mRoPE position ids, tiny test models."""

from longctx_rope.processors import (
    ImageOnlyQwen2_5_VLProcessor,
    ImageOnlyQwen3VLProcessor,
    load_processor,
)
from longctx_rope.tiny import (
    SPECIAL_TOKENS,
    TINY_CHAT_TEMPLATE,
    build_tiny_model,
    save_tiny_checkpoint,
    special_token_id,
    tiny_config,
    tiny_image,
    tiny_processor,
    tiny_tokenizer,
)

__version__ = "0.1.0"

__all__ = [
    "SPECIAL_TOKENS",
    "TINY_CHAT_TEMPLATE",
    "ImageOnlyQwen2_5_VLProcessor",
    "ImageOnlyQwen3VLProcessor",
    "__version__",
    "build_tiny_model",
    "load_processor",
    "save_tiny_checkpoint",
    "special_token_id",
    "tiny_config",
    "tiny_image",
    "tiny_processor",
    "tiny_tokenizer",
]
