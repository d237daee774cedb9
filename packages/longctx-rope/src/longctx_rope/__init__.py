"""longctx-rope: (m)RoPE extension of Qwen-VL checkpoints, mRoPE position ids, span and
wavelength analysis.

The package exports what each command runs and the types it returns. Method specs
(``longctx_rope.methods``), legacy loader rules (``longctx_rope.loaders``) and the tiny offline
Qwen-VL models for tests (``longctx_rope.tiny``) are reached by module path.
"""

from longctx_rope.apply import apply_rope
from longctx_rope.architectures import UnsupportedArchitectureError, describe_architecture
from longctx_rope.extend import (
    ExtendResult,
    VerificationError,
    extend_checkpoint,
    verify,
    write_rope_config,
)
from longctx_rope.loaders import loader_views
from longctx_rope.methods import RopeSpec, make_spec, spec_from_recipe
from longctx_rope.positions import MRopeLayout, PackedDoc, get_rope_index, packed_position_ids

# Importing the processors module registers the image-only Qwen processors with AutoProcessor.
from longctx_rope.processors import load_processor
from longctx_rope.span import Span, span_of_path
from longctx_rope.wavelengths import Frequency, frequency_table

__version__ = "0.1.0"

__all__ = [
    "ExtendResult",
    "Frequency",
    "MRopeLayout",
    "PackedDoc",
    "RopeSpec",
    "Span",
    "UnsupportedArchitectureError",
    "VerificationError",
    "__version__",
    "apply_rope",
    "describe_architecture",
    "extend_checkpoint",
    "frequency_table",
    "get_rope_index",
    "load_processor",
    "loader_views",
    "make_spec",
    "packed_position_ids",
    "span_of_path",
    "spec_from_recipe",
    "verify",
    "write_rope_config",
]
