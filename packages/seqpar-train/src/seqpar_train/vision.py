"""The vision tower under sequence parallelism.

Images are given whole to SP ranks, balanced by patch count (longest-first onto the least
loaded rank), so no rank repeats another's ViT work. Each rank encodes its images; one
all_to_all then sends every merged image embedding to the rank whose sequence slice holds
that image token. A rank that owns no image encodes a tiny dummy image (its output is
multiplied by zero), so every rank runs the same FSDP all-gathers and gradient reductions.

The assignment depends only on the images' grids (t, h, w), which the dataloader knows from
page sizes before rendering: each rank renders and preprocesses only the images it encodes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.distributed import ProcessGroup

from seqpar_train.batch import PackedRow
from seqpar_train.collectives import all_to_all, group_rank, group_size


def assign_images(patch_counts: list[int], sp: int) -> list[int]:
    """Owner rank of every image: largest first, each onto the least-loaded rank."""
    load = [0] * sp
    owner = [0] * len(patch_counts)
    for index in sorted(range(len(patch_counts)), key=lambda i: (-patch_counts[i], i)):
        rank = min(range(sp), key=lambda r: (load[r], r))
        owner[index] = rank
        load[rank] += patch_counts[index]
    return owner


def image_owners(image_grid_thw: torch.Tensor | None, sp: int) -> list[int]:
    """Owner SP rank of every image of a row, from its grids alone (no pixels needed)."""
    if image_grid_thw is None:
        return []
    return assign_images([int(n) for n in image_grid_thw.prod(-1).tolist()], sp)


def take_pixel_share(row: PackedRow, sp_rank: int, sp: int) -> PackedRow:
    """``row`` keeping only the pixels of the images SP rank ``sp_rank`` encodes (for rows
    built whole; the mixture dataloader renders only the share in the first place)."""
    if row.pixel_share is not None:
        if tuple(row.pixel_share) != (sp_rank, sp):
            raise ValueError(f"the row holds the pixels of SP rank/size {row.pixel_share}")
        return row
    if row.pixel_values is None or row.image_grid_thw is None:
        return replace(row, pixel_share=(sp_rank, sp))
    patches = [int(n) for n in row.image_grid_thw.prod(-1).tolist()]
    owner = image_owners(row.image_grid_thw, sp)
    pieces = row.pixel_values.split(patches)
    mine = [piece for piece, o in zip(pieces, owner, strict=True) if o == sp_rank]
    return replace(row, pixel_values=torch.cat(mine) if mine else None, pixel_share=(sp_rank, sp))


@dataclass
class ShardImages:
    """Image embeddings of the image tokens inside this rank's slice, in sequence order."""

    embeds: torch.Tensor  # (n_local_image_tokens, hidden)
    deepstack: list[torch.Tensor] | None  # Qwen3-VL: one (n_local_image_tokens, hidden) per level
    dummy: torch.Tensor  # a zero scalar tied to the ViT graph; add it to the loss


def _encode(
    visual: Any, pixels: torch.Tensor, grid: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    dtype = next(visual.parameters()).dtype
    out = visual(pixels.to(dtype), grid_thw=grid)
    deepstack = getattr(out, "deepstack_features", None)
    return out.pooler_output, (list(deepstack) if deepstack is not None else None)


def _dummy_inputs(visual: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    config = visual.config
    merge = config.spatial_merge_size
    patch_dim = config.in_channels * config.temporal_patch_size * config.patch_size**2
    grid = torch.tensor([[1, merge, merge]], device=device)
    return torch.zeros((merge * merge, patch_dim), device=device), grid


def shard_image_embeddings(
    visual: Any,
    pixel_values: torch.Tensor | None,
    image_grid_thw: torch.Tensor | None,
    full_input_ids: torch.Tensor,
    image_token_id: int,
    slice_length: int,
    group: ProcessGroup | None,
    pixel_share: tuple[int, int] | None = None,
) -> ShardImages:
    """Encode this rank's share of the row's images and return the embeddings its slice needs.

    ``full_input_ids`` is the whole padded row (every rank has it), so every rank computes the
    same plan: who encodes which image and where each image token goes. ``pixel_values``
    holds every image of the row, or, when ``pixel_share`` is (this rank, SP size), only the
    images this rank owns, in order (the dataloader rendered only those).
    """
    sp, rank = group_size(group), group_rank(group)
    device = full_input_ids.device
    merge = visual.config.spatial_merge_size
    grids = image_grid_thw.tolist() if image_grid_thw is not None else []
    patches = [t * h * w for t, h, w in grids]
    tokens = [p // (merge * merge) for p in patches]
    positions = (full_input_ids == image_token_id).nonzero(as_tuple=True)[0]
    if positions.numel() != sum(tokens):
        raise ValueError(
            f"the row has {positions.numel()} image tokens but its images make {sum(tokens)}: "
            "the processor and the packer disagree on the image sizes"
        )
    owner = assign_images(patches, sp)
    mine = [i for i in range(len(grids)) if owner[i] == rank]

    if pixel_share is not None and tuple(pixel_share) != (rank, sp):
        raise ValueError(
            f"pixel_values were rendered for SP rank {pixel_share[0]} of {pixel_share[1]}, "
            f"but this is rank {rank} of {sp}"
        )
    zero = full_input_ids.new_zeros((), dtype=torch.float32)
    if mine:
        assert pixel_values is not None and image_grid_thw is not None
        if pixel_share is None:
            offsets = [0]
            for p in patches:
                offsets.append(offsets[-1] + p)
            rows = torch.cat(
                [torch.arange(offsets[i], offsets[i + 1], device=device) for i in mine]
            )
            pixel_values = pixel_values.index_select(0, rows)
        elif pixel_values.shape[0] != sum(patches[i] for i in mine):
            raise ValueError(
                f"this rank's pixel_values have {pixel_values.shape[0]} patches, its images "
                f"{sum(patches[i] for i in mine)}"
            )
        embeds, deepstack = _encode(visual, pixel_values, image_grid_thw[mine])
        dummy = zero
    else:
        pixels, grid = _dummy_inputs(visual, device)
        fake, fake_deep = _encode(visual, pixels, grid)
        dummy = fake.sum() * 0.0 + sum((f.sum() * 0.0 for f in fake_deep or []), zero)
        embeds = fake[:0]
        deepstack = [f[:0] for f in fake_deep] if fake_deep is not None else None

    levels = len(deepstack) if deepstack is not None else 0
    packed = torch.cat([embeds, *(deepstack or [])], dim=-1) if levels else embeds

    if sp > 1 and group is not None:
        image_of = torch.repeat_interleave(
            torch.arange(len(tokens), device=device),
            torch.tensor(tokens, dtype=torch.long, device=device),
        )
        dest = (positions // slice_length).tolist()
        token_owner = [owner[i] for i in image_of.tolist()]
        # My tokens in global order, regrouped by destination (stable, so still in order).
        my_tokens = [g for g, o in enumerate(token_owner) if o == rank]
        order = sorted(range(len(my_tokens)), key=lambda j: dest[my_tokens[j]])
        send_splits = [sum(1 for g in my_tokens if dest[g] == d) for d in range(sp)]
        recv_from = [
            [g for g, o in enumerate(token_owner) if o == s and dest[g] == rank] for s in range(sp)
        ]
        recv_splits = [len(r) for r in recv_from]
        send = packed.index_select(0, torch.tensor(order, dtype=torch.long, device=device))
        received = all_to_all(send, group, send_splits, recv_splits)
        arrival = [g for r in recv_from for g in r]
        sequence_order = sorted(range(len(arrival)), key=lambda j: arrival[j])
        packed = received.index_select(
            0, torch.tensor(sequence_order, dtype=torch.long, device=device)
        )

    if levels:
        parts = list(packed.split(embeds.shape[-1], dim=-1))
        return ShardImages(parts[0], parts[1:], dummy)
    return ShardImages(packed, None, dummy)
