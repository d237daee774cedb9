"""Training FLOPs of a Qwen-VL language model, MFU, and time to spend a token budget.

Matmul FLOPs are 6 per parameter per token (forward 2, backward 4). Attention score and
value products add 12 * layers * hidden * L per token for a document of L tokens when every
query sees every key ("non-causal", the figure many trainers report) and half of that when
each query sees only earlier keys ("causal", what the kernel actually computes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from mmprolong_schemas import Model


class ArchSpec(Model):
    """The shape of a decoder; the vision tower is counted from its own parameter count."""

    layers: int = Field(ge=1)
    hidden: int = Field(ge=1)
    intermediate: int = Field(ge=1)
    heads: int = Field(ge=1)
    kv_heads: int = Field(ge=1)
    vocab: int = Field(ge=1)
    head_dim: int | None = None
    vision_params: int = 0

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def layer_params(self) -> int:
        q = self.hidden * self.heads * self.dim_per_head
        kv = 2 * self.hidden * self.kv_heads * self.dim_per_head
        o = self.heads * self.dim_per_head * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        return q + kv + o + mlp

    @property
    def matmul_params(self) -> int:
        """Parameters that multiply every text token: decoder layers and the LM head."""
        return self.layers * self.layer_params + self.hidden * self.vocab

    @property
    def attention_width(self) -> int:
        return self.heads * self.dim_per_head


PRESETS: dict[str, ArchSpec] = {
    "qwen2.5-vl-7b": ArchSpec(
        layers=28,
        hidden=3584,
        intermediate=18944,
        heads=28,
        kv_heads=4,
        vocab=152064,
        vision_params=676_000_000,
    ),
    "qwen3-vl-8b": ArchSpec(
        layers=36,
        hidden=4096,
        intermediate=12288,
        heads=32,
        kv_heads=8,
        vocab=151936,
        head_dim=128,
        vision_params=576_000_000,
    ),
}


def arch_from_config(config: Any) -> ArchSpec:
    """An ArchSpec from an HF Qwen-VL config (its text_config)."""
    text = getattr(config, "text_config", config)
    return ArchSpec(
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        heads=text.num_attention_heads,
        kv_heads=text.num_key_value_heads,
        vocab=text.vocab_size,
        head_dim=getattr(text, "head_dim", None),
    )


@dataclass(frozen=True)
class RowFlops:
    causal: float
    non_causal: float


def training_flops(
    arch: ArchSpec, doc_lens: Sequence[int], label_tokens: int | None = None
) -> RowFlops:
    """FLOPs of forward + backward of one packed row of documents ``doc_lens``.

    With ``label_tokens`` the LM head counts only labelled positions (the chunked loss never
    computes the others); otherwise every token."""
    tokens = sum(doc_lens)
    head_tokens = tokens if label_tokens is None else label_tokens
    body = 6 * arch.layers * arch.layer_params * tokens + 6 * arch.hidden * arch.vocab * head_tokens
    # QK^T and AV: 2 matmuls x 2 FLOPs x L^2 x width per layer forward; x3 for training.
    full = sum(12 * arch.layers * arch.attention_width * n * n for n in doc_lens)
    return RowFlops(causal=body + full / 2, non_causal=body + full)


class Estimate(Model):
    tokens_per_step: int
    step_flops_causal: float
    step_flops_non_causal: float
    steps: int
    step_seconds: float
    total_hours: float
    gpu_hours: float
    assumed_mfu: float


def estimate(
    arch: ArchSpec,
    *,
    seq_len: int,
    doc_len: int | None,
    global_batch_tokens: int,
    token_budget: int,
    gpus: int,
    peak_tflops: float,
    mfu: float,
) -> Estimate:
    """Time to spend ``token_budget`` at a given MFU (measured on causal FLOPs)."""
    rows = global_batch_tokens // seq_len
    doc = doc_len or seq_len
    docs = [doc] * (seq_len // doc) + ([seq_len % doc] if seq_len % doc else [])
    # The vision tower: ~2 FLOPs per parameter per patch forward, 3x for training; a merged
    # token covers 4 patches, and about 9 in 10 tokens of a page-heavy row are image tokens.
    vision = 6 * arch.vision_params * 4 * 0.9 * seq_len
    row = training_flops(arch, docs)
    per_step_causal = rows * (row.causal + vision)
    per_step_non_causal = rows * (row.non_causal + vision)
    steps = -(-token_budget // global_batch_tokens)
    step_seconds = per_step_causal / (gpus * peak_tflops * 1e12 * mfu)
    hours = steps * step_seconds / 3600
    return Estimate(
        tokens_per_step=rows * seq_len,
        step_flops_causal=per_step_causal,
        step_flops_non_causal=per_step_non_causal,
        steps=steps,
        step_seconds=step_seconds,
        total_hours=hours,
        gpu_hours=hours * gpus,
        assumed_mfu=mfu,
    )
