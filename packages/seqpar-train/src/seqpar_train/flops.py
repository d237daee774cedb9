"""Training FLOPs of a Qwen-VL model (text decoder and vision tower), MFU, time to budget.

Two conventions, reported side by side:

- ``causal`` (ours): what the kernels compute. Matmuls cost 6 FLOPs per parameter per token
  (forward 2, backward 4); the LM head only at labelled positions (the chunked loss computes
  no other logits); text attention is document-causal, so its score and value products cost
  6 * layers * width * L^2 for a document of L tokens (half of the full square); the vision
  tower's attention is full inside each attention window (Qwen2.5-VL's windowed blocks) or
  each image (its full-attention blocks, and every Qwen3-VL block).
- ``veomni`` (peers'): VeOmni's flops counter (veomni/utils/count_flops.py, restated, not
  copied): 6 FLOPs per dense parameter per token with embedding and LM head counted for
  every token, and attention as 12 * layers * width * sum(s^2), non-causal, with the vision
  tower's attention counted per whole image. verl counts 6 * sum(s^2).

The DESIGN note: the paper spent about 2.9K H20 GPU-hours on 5B tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from mmprolong_schemas.base import Model


class VisionSpec(Model):
    """The shape of a Qwen-VL vision tower."""

    depth: int = Field(ge=1)
    hidden: int = Field(ge=1)
    intermediate: int = Field(ge=1)
    patch_size: int = Field(ge=1)
    temporal_patch_size: int = Field(ge=1)
    merge: int = Field(ge=1)
    in_channels: int = 3
    out_hidden: int = Field(ge=1)
    gated_mlp: bool = Field(description="SwiGLU (gate, up, down) as Qwen2.5-VL; else fc1/fc2.")
    window_patches_side: int | None = Field(
        default=None, description="Patches per side of an attention window (Qwen2.5-VL)."
    )
    full_attention_blocks: int = Field(ge=0, description="Blocks attending over whole images.")
    mergers: int = Field(default=1, ge=1, description="Patch mergers (Qwen3-VL: 1 + deepstack).")

    @property
    def block_params(self) -> int:
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.intermediate
        return 4 * self.hidden * self.hidden + mlp

    @property
    def patch_embed_params(self) -> int:
        return self.in_channels * self.temporal_patch_size * self.patch_size**2 * self.hidden

    @property
    def merger_params(self) -> int:
        """Per merged token (merge^2 patches): an MLP 4h -> 4h -> out, per merger."""
        wide = self.hidden * self.merge**2
        return self.mergers * (wide * wide + wide * self.out_hidden)

    def linear_flops(self, patches: int) -> float:
        """Training FLOPs of every matmul of the tower for ``patches`` patches."""
        per_patch = self.patch_embed_params + self.depth * self.block_params
        return 6.0 * (per_patch * patches + self.merger_params * patches / self.merge**2)

    def attention_sq(self, grid: tuple[int, int, int]) -> tuple[int, int]:
        """(sum of squared attention spans over the windowed blocks' windows, squared frame
        length) for one image of (t, h, w) patches: each frame attends within itself."""
        t, h, w = grid
        frame = h * w
        if self.window_patches_side is None:
            return frame * frame * t, frame * frame * t
        side = self.window_patches_side // self.merge  # window side in merged tokens
        rows, cols = h // self.merge, w // self.merge
        row_blocks = [side] * (rows // side) + ([rows % side] if rows % side else [])
        col_blocks = [side] * (cols // side) + ([cols % side] if cols % side else [])
        cell = self.merge**2
        windows = sum((r * c * cell) ** 2 for r in row_blocks for c in col_blocks)
        return windows * t, frame * frame * t


class ArchSpec(Model):
    """The shape of a decoder, and of the vision tower if it has one."""

    layers: int = Field(ge=1)
    hidden: int = Field(ge=1)
    intermediate: int = Field(ge=1)
    heads: int = Field(ge=1)
    kv_heads: int = Field(ge=1)
    vocab: int = Field(ge=1)
    head_dim: int | None = None
    vision: VisionSpec | None = None

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


def vision_from_config(vision: Any) -> VisionSpec:
    """A VisionSpec from a Qwen2.5-VL or Qwen3-VL ``vision_config``."""
    window = getattr(vision, "window_size", None)
    full = getattr(vision, "fullatt_block_indexes", None)
    windowed = window is not None and full is not None
    return VisionSpec(
        depth=vision.depth,
        hidden=vision.hidden_size,
        intermediate=vision.intermediate_size,
        patch_size=vision.patch_size,
        temporal_patch_size=vision.temporal_patch_size,
        merge=vision.spatial_merge_size,
        in_channels=getattr(vision, "in_channels", getattr(vision, "in_chans", 3)),
        out_hidden=vision.out_hidden_size,
        # Qwen2.5-VL's blocks use a SwiGLU MLP; Qwen3-VL's a plain two-layer one.
        gated_mlp=windowed,
        window_patches_side=window // vision.patch_size if windowed else None,
        full_attention_blocks=len(full or []) if windowed else vision.depth,
        mergers=1 + len(getattr(vision, "deepstack_visual_indexes", None) or []),
    )


def arch_from_config(config: Any) -> ArchSpec:
    """An ArchSpec from an HF Qwen-VL config (its text_config and vision_config)."""
    text = getattr(config, "text_config", config)
    vision = getattr(config, "vision_config", None)
    return ArchSpec(
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        heads=text.num_attention_heads,
        kv_heads=text.num_key_value_heads,
        vocab=text.vocab_size,
        head_dim=getattr(text, "head_dim", None),
        vision=vision_from_config(vision) if vision is not None else None,
    )


def preset_arch(name: str) -> ArchSpec:
    """The ArchSpec of a shipped model preset (``seqpar_train.presets``) or checkpoint."""
    from seqpar_train.presets import preset_config

    return arch_from_config(preset_config(name))


@dataclass(frozen=True)
class RowFlops:
    """Training FLOPs of one row in both conventions, and the vision tower's part of each."""

    causal: float
    veomni: float
    vision_causal: float = 0.0
    vision_veomni: float = 0.0

    def __add__(self, other: RowFlops) -> RowFlops:
        return RowFlops(
            self.causal + other.causal,
            self.veomni + other.veomni,
            self.vision_causal + other.vision_causal,
            self.vision_veomni + other.vision_veomni,
        )

    def scaled(self, factor: float) -> RowFlops:
        return RowFlops(
            self.causal * factor,
            self.veomni * factor,
            self.vision_causal * factor,
            self.vision_veomni * factor,
        )


def vision_flops(vision: VisionSpec, grids: Sequence[tuple[int, int, int]]) -> RowFlops:
    """Training FLOPs of the vision tower over images of (t, h, w) patches."""
    patches = sum(t * h * w for t, h, w in grids)
    linear = vision.linear_flops(patches)
    windows = frames = 0
    for grid in grids:
        window_sq, frame_sq = vision.attention_sq(grid)
        windows += window_sq
        frames += frame_sq
    per_sq = 12.0 * vision.hidden  # QK^T and AV, 2 FLOPs per MAC, x3 for training
    windowed_blocks = vision.depth - vision.full_attention_blocks
    causal = linear + per_sq * (windowed_blocks * windows + vision.full_attention_blocks * frames)
    veomni = linear + per_sq * vision.depth * frames
    return RowFlops(causal, veomni, causal, veomni)


def training_flops(
    arch: ArchSpec,
    doc_lens: Sequence[int],
    label_tokens: int | None = None,
    image_grids: Sequence[tuple[int, int, int]] = (),
) -> RowFlops:
    """FLOPs of forward + backward of one packed row of documents ``doc_lens`` holding
    images of ``image_grids`` (t, h, w patches each).

    With ``label_tokens`` our convention counts the LM head only at labelled positions (the
    chunked loss never computes the others); otherwise every token."""
    tokens = sum(doc_lens)
    head_tokens = tokens if label_tokens is None else label_tokens
    layers = 6.0 * arch.layers * arch.layer_params * tokens
    full = sum(12.0 * arch.layers * arch.attention_width * n * n for n in doc_lens)
    causal = layers + 6.0 * arch.hidden * arch.vocab * head_tokens + full / 2
    # VeOmni: embedding + LM head as dense parameters over every token.
    veomni = layers + 6.0 * 2 * arch.hidden * arch.vocab * tokens + full
    text = RowFlops(causal, veomni)
    if arch.vision is None or not image_grids:
        return text
    return text + vision_flops(arch.vision, image_grids)


def page_grid(
    height_px: int, width_px: int, factor: int, min_pixels: int, max_pixels: int, patch: int
) -> tuple[int, int, int]:
    """The (t, h, w) patch grid of one page image after the processor's resize."""
    from mmprolong_schemas.vision_tokens import smart_resize

    h, w = smart_resize(height_px, width_px, factor, min_pixels, max_pixels)
    return (1, h // patch, w // patch)


class Estimate(Model):
    tokens_per_step: int
    step_flops_causal: float
    step_flops_veomni: float
    vision_share_causal: float = Field(description="The vision tower's share of causal FLOPs.")
    steps: int
    step_seconds: float
    total_hours: float
    gpu_hours: float
    assumed_mfu: float
    peak_tflops: float


@dataclass(frozen=True)
class RowShape:
    """A representative row: its documents, labelled tokens and page images."""

    doc_lens: list[int]
    label_tokens: int
    image_grids: list[tuple[int, int, int]]

    @property
    def tokens(self) -> int:
        return sum(self.doc_lens)


def page_row(
    arch: ArchSpec,
    *,
    seq_len: int,
    doc_len: int | None = None,
    page_px: tuple[int, int] = (1584, 1224),
    factor: int = 28,
    min_pixels: int = 3136,
    max_pixels: int = 12845056,
    answer_tokens: int = 64,
    text_tokens_per_page: int = 0,
) -> RowShape:
    """A row of documents made of rendered pages: each document of ``doc_len`` tokens
    (default: the row) holds as many pages as fit, each page costing its image tokens plus
    two vision markers and ``text_tokens_per_page``; the rest of the document is text.
    Default page: US letter at 144 DPI (1224 x 1584 px -> 2508 tokens on Qwen2.5-VL)."""
    patch = arch.vision.patch_size if arch.vision else factor // 2
    merge = arch.vision.merge if arch.vision else 2
    grid = page_grid(page_px[0], page_px[1], factor, min_pixels, max_pixels, patch)
    per_page = grid[1] * grid[2] // merge**2 + 2 + text_tokens_per_page
    doc = min(doc_len or seq_len, seq_len)
    docs = [doc] * (seq_len // doc) + ([seq_len % doc] if seq_len % doc else [])
    grids: list[tuple[int, int, int]] = []
    for n in docs:
        grids += [grid] * max(0, (n - answer_tokens) // per_page)
    return RowShape(docs, min(answer_tokens * len(docs), seq_len), grids)


def steps_for_budget(token_budget: int, global_batch_tokens: int) -> int:
    """Optimizer steps to spend ``token_budget``: 5 * 2**30 / (4 * 2**20) = 1280."""
    if token_budget < 1 or global_batch_tokens < 1:
        raise ValueError("token budget and global batch must be positive")
    return -(-token_budget // global_batch_tokens)


def seconds_at_mfu(flops: float, devices: int, peak_tflops: float, mfu: float) -> float:
    """Seconds ``devices`` of ``peak_tflops`` each take for ``flops`` at ``mfu`` (the
    inverse of ``mfu``)."""
    return flops / (devices * peak_tflops * 1e12 * mfu)


def estimate(
    arch: ArchSpec,
    *,
    row: RowShape,
    row_length: int,
    global_batch_tokens: int,
    token_budget: int,
    gpus: int,
    peak_tflops: float,
    mfu: float,
) -> Estimate:
    """Time to train ``token_budget`` tokens at a given MFU (of causal FLOPs). A step has
    ``global_batch_tokens / row_length`` rows, each holding ``row``'s real tokens (fewer than
    ``row_length`` when packing leaves padding): the budget counts those, not padding."""
    rows = global_batch_tokens // row_length
    flops = training_flops(arch, row.doc_lens, row.label_tokens, row.image_grids).scaled(rows)
    trained_per_step = rows * row.tokens
    steps = steps_for_budget(token_budget, trained_per_step)
    step_seconds = seconds_at_mfu(flops.causal, gpus, peak_tflops, mfu)
    hours = steps * step_seconds / 3600
    return Estimate(
        tokens_per_step=trained_per_step,
        step_flops_causal=flops.causal,
        step_flops_veomni=flops.veomni,
        vision_share_causal=flops.vision_causal / flops.causal,
        steps=steps,
        step_seconds=step_seconds,
        total_hours=hours,
        gpu_hours=hours * gpus,
        assumed_mfu=mfu,
        peak_tflops=peak_tflops,
    )


def mfu(flops: float, seconds: float, devices: int, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation of ``flops`` done in ``seconds`` on ``devices``; None when
    the peak is unknown."""
    if peak_tflops is None or seconds <= 0:
        return None
    return flops / seconds / (devices * peak_tflops * 1e12)
