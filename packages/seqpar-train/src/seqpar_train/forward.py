"""One packed row through an HF Qwen-VL model under sequence parallelism, to a loss.

The model is called piece by piece (vision tower, embeddings, text decoder, lm_head) so that
each rank embeds only its slice, the vision tower runs once per image, and logits exist only
at labelled positions. The decoder itself is the unchanged HF module; its attention is the
Ulysses function installed by ``seqpar_train.ulysses.install_attention``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributed import ProcessGroup

from seqpar_train.batch import PackedRow, shard_row
from seqpar_train.collectives import group_rank, group_size
from seqpar_train.loss import labelled_cross_entropy
from seqpar_train.ulysses import CU_SEQLENS_KWARG
from seqpar_train.vision import shard_image_embeddings


@dataclass
class RowLoss:
    """This rank's share of a row: the loss sum over its labelled tokens and their count."""

    loss_sum: torch.Tensor
    label_tokens: torch.Tensor
    tokens: int  # real tokens in this rank's slice
    pad_tokens: int  # padding in this rank's slice


def _parts(model: Any) -> tuple[Any, Any, Any]:
    inner = model.model  # Qwen2_5_VLModel / Qwen3VLModel
    return inner.visual, inner.language_model, model.lm_head


def count_label_tokens(row: PackedRow, sp_rank: int, sp_size: int) -> int:
    """Labelled tokens of this rank's slice, known before the forward pass."""
    from seqpar_train.batch import IGNORE_INDEX

    shard = shard_row(row, sp_rank, sp_size, pad_token_id=0)
    return int((shard.shifted_labels != IGNORE_INDEX).sum())


def row_loss(
    model: Any,
    row: PackedRow,
    *,
    sp_group: ProcessGroup | None = None,
    pad_token_id: int = 0,
    loss_chunk: int = 4096,
) -> RowLoss:
    """Forward one packed row on this SP rank and return its loss sum and label count."""
    sp, rank = group_size(sp_group), group_rank(sp_group)
    shard = shard_row(row, rank, sp, pad_token_id)
    visual, language_model, lm_head = _parts(model)
    config = model.config
    slice_length = shard.input_ids.shape[0]

    images = shard_image_embeddings(
        visual,
        row.pixel_values,
        row.image_grid_thw,
        shard.full_input_ids,
        config.image_token_id,
        slice_length,
        sp_group,
        pixel_share=row.pixel_share,
    )
    embeds = language_model.get_input_embeddings()(shard.input_ids[None])
    image_mask = (shard.input_ids == config.image_token_id)[None]
    # Unconditional, even with no image token here: the exchange's backward is a collective
    # that every SP rank must reach.
    embeds = embeds.masked_scatter(
        image_mask[..., None].expand_as(embeds), images.embeds.to(embeds.dtype)
    )
    extra: dict[str, object] = {}
    if "deepstack_visual_embeds" in inspect.signature(language_model.forward).parameters:
        extra = {"visual_pos_masks": image_mask, "deepstack_visual_embeds": images.deepstack}
    out = language_model(
        inputs_embeds=embeds,
        position_ids=shard.position_ids[:, None, :],
        attention_mask=None,
        use_cache=False,
        **{CU_SEQLENS_KWARG: shard.cu_seqlens},
        **extra,
    )
    hidden = out.last_hidden_state[0]
    loss_sum, label_tokens = labelled_cross_entropy(
        hidden, lm_head, shard.shifted_labels, chunk_size=loss_chunk
    )
    end = shard.start + slice_length
    real_end = shard.padded_length - shard.pad_tokens
    pad_here = max(0, end - max(shard.start, real_end))
    return RowLoss(
        loss_sum=loss_sum + images.dummy,
        label_tokens=label_tokens,
        tokens=slice_length - pad_here,
        pad_tokens=pad_here,
    )


class PackedLossModel(torch.nn.Module):
    """The HF model plus the packed-row loss as one module: FSDP's root hooks then cover
    the embeddings, the vision patch embed and mergers, the final norm and the LM head,
    which ``row_loss`` uses directly rather than through the HF forward."""

    def __init__(
        self,
        hf_model: Any,
        *,
        sp_group: ProcessGroup | None = None,
        pad_token_id: int = 0,
        loss_chunk: int = 4096,
    ) -> None:
        super().__init__()
        self.hf_model = hf_model
        self.sp_group = sp_group
        self.pad_token_id = pad_token_id
        self.loss_chunk = loss_chunk
        self.last_tokens = (0, 0)

    def forward(self, row: PackedRow) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss sum, labelled tokens) of this rank's slice of ``row``."""
        out = row_loss(
            self.hf_model,
            row,
            sp_group=self.sp_group,
            pad_token_id=self.pad_token_id,
            loss_chunk=self.loss_chunk,
        )
        self.last_tokens = (out.tokens, out.pad_tokens)
        return out.loss_sum, out.label_tokens
