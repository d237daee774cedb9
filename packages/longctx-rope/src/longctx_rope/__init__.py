"""longctx-rope: (m)RoPE extension of Qwen-VL checkpoints, mRoPE position ids, tiny test models."""

from longctx_rope.apply import apply_rope
from longctx_rope.architectures import (
    Architecture,
    UnsupportedArchitectureError,
    describe_architecture,
)
from longctx_rope.extend import (
    ExtendResult,
    VerificationError,
    extend_checkpoint,
    extended_config,
    verify,
    write_rope_config,
)
from longctx_rope.loaders import RopeView, loader_views
from longctx_rope.methods import (
    LinearSpec,
    NtkBaseSpec,
    RopeSpec,
    SetBaseSpec,
    YarnSpec,
    default_inv_freq,
    make_spec,
    ntk_base,
    spec_from_recipe,
)
from longctx_rope.positions import MRopeLayout, PackedDoc, get_rope_index, packed_position_ids
from longctx_rope.processors import (
    ImageOnlyQwen2_5_VLProcessor,
    ImageOnlyQwen3VLProcessor,
    load_processor,
)
from longctx_rope.span import Span, SpanRun, layout_span, span_of_path
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
from longctx_rope.wavelengths import Frequency, frequency_table, section_of_frequencies

__version__ = "0.1.0"

__all__ = [
    "Frequency",
    "Span",
    "SpanRun",
    "frequency_table",
    "layout_span",
    "section_of_frequencies",
    "span_of_path",
    "ExtendResult",
    "LinearSpec",
    "NtkBaseSpec",
    "RopeSpec",
    "RopeView",
    "SetBaseSpec",
    "VerificationError",
    "YarnSpec",
    "apply_rope",
    "default_inv_freq",
    "extend_checkpoint",
    "extended_config",
    "loader_views",
    "make_spec",
    "ntk_base",
    "spec_from_recipe",
    "verify",
    "write_rope_config",
    "Architecture",
    "MRopeLayout",
    "PackedDoc",
    "UnsupportedArchitectureError",
    "describe_architecture",
    "get_rope_index",
    "packed_position_ids",
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
