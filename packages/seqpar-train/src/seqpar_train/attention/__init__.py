"""Varlen (packed, document-causal) attention behind one interface.

Every backend takes packed ``(total_tokens, heads, head_dim)`` tensors and the cumulative
document lengths ``cu_seqlens`` of the row, and lets a token attend only to earlier tokens of
its own document.
"""

from seqpar_train.attention.backends import (
    BACKENDS,
    AttentionBackend,
    BackendChoice,
    available_backends,
    backend_support,
    choose_backend,
    document_block_mask,
    resolve_backend,
    varlen_attention,
)

__all__ = [
    "BACKENDS",
    "AttentionBackend",
    "BackendChoice",
    "available_backends",
    "backend_support",
    "choose_backend",
    "document_block_mask",
    "resolve_backend",
    "varlen_attention",
]
