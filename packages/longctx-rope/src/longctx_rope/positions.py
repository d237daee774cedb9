"""mRoPE position ids of Qwen2.5-VL / Qwen3-VL sequences, single and packed.

The rules are those of transformers' ``get_rope_index`` (5.x) for each family:

- text tokens advance all three rows (T, H, W) together by one per token;
- an image of llm grid (t, h, w) (the vision grid divided by the spatial merge size) gets
  T = start + t_index * interval, H = start + row, W = start + column, and the next token starts
  at start + max(h, w); interval is 1 for images;
- Qwen2.5-VL videos use interval = tokens_per_second * seconds_per_grid_t, as one block;
- Qwen3-VL videos are split into single frames (one grid of t = 1 per frame, each between its own
  timestamp text and vision start/end tokens), so every frame is placed like an image.

Image and video tokens are recognised by their ids (the processor's mm_token_type_ids marks
exactly these tokens), so the functions work on token ids alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from longctx_rope.architectures import describe_architecture
from mmprolong_schemas import ModelFamily

TEXT, IMAGE, VIDEO = 0, 1, 2


@dataclass(frozen=True)
class MRopeLayout:
    """The settings of a model that decide its mRoPE positions."""

    family: ModelFamily
    image_token_id: int
    video_token_id: int
    spatial_merge_size: int = 2
    tokens_per_second: float = 2.0
    """Qwen2.5-VL only: temporal position step per second of video."""

    def __post_init__(self) -> None:
        # Accept "qwen2.5-vl" as well as the enum; comparisons below use the enum.
        object.__setattr__(self, "family", ModelFamily(self.family))

    @classmethod
    def from_config(cls, config: Any) -> MRopeLayout:
        """From a transformers config (or its dict) of a Qwen2.5-VL or Qwen3-VL model."""
        data = config if isinstance(config, dict) else config.to_dict()
        family = describe_architecture(data).family
        vision = data.get("vision_config") or {}
        return cls(
            family=family,
            image_token_id=int(data["image_token_id"]),
            video_token_id=int(data["video_token_id"]),
            spatial_merge_size=int(vision.get("spatial_merge_size", 2)),
            tokens_per_second=float(vision.get("tokens_per_second", 2.0)),
        )


def _layout(layout: MRopeLayout | Any) -> MRopeLayout:
    return layout if isinstance(layout, MRopeLayout) else MRopeLayout.from_config(layout)


def _grid_rows(grid_thw: torch.Tensor | None, name: str) -> list[tuple[int, int, int]]:
    if grid_thw is None:
        return []
    grid = torch.as_tensor(grid_thw).reshape(-1, 3)
    if (grid <= 0).any():
        raise ValueError(f"{name} has a non-positive entry: {grid.tolist()}")
    return [(int(t), int(h), int(w)) for t, h, w in grid.tolist()]


def _vision_positions(
    start: int, grid: tuple[int, int, int], merge: int, interval: torch.Tensor | float
) -> torch.Tensor:
    t, h, w = grid[0], grid[1] // merge, grid[2] // merge
    temporal = (torch.arange(t) * interval).long() + start
    rows = torch.arange(h) + start
    cols = torch.arange(w) + start
    t_grid, h_grid, w_grid = torch.meshgrid(temporal, rows, cols, indexing="ij")
    return torch.stack([t_grid, h_grid, w_grid]).reshape(3, -1)


class _Grids:
    """Hands out the grids of one modality in order, across the rows of a batch."""

    def __init__(self, grids: list[tuple[int, int, int]], name: str) -> None:
        self.grids, self.name, self.next = grids, name, 0

    def take(self) -> tuple[int, int, int]:
        if self.next >= len(self.grids):
            raise ValueError(f"more {self.name} tokens than {self.name}_grid_thw rows describe")
        grid = self.grids[self.next]
        self.next += 1
        return grid

    def check_all_used(self) -> None:
        if self.next != len(self.grids):
            raise ValueError(
                f"{self.name}_grid_thw describes {len(self.grids)} {self.name} blocks but the "
                f"tokens hold {self.next}"
            )


def _sequence_positions(
    ids: torch.Tensor,
    layout: MRopeLayout,
    images: _Grids,
    videos: _Grids,
    seconds: list[torch.Tensor | int],
) -> tuple[torch.Tensor, int]:
    """(3, len(ids)) positions of one unpadded sequence, and their maximum (-1 if empty)."""
    types = (ids == layout.image_token_id).to(torch.int8)
    types += (ids == layout.video_token_id).to(torch.int8) * VIDEO
    change = (types[1:] != types[:-1]).nonzero().flatten() + 1
    bounds = [0, *change.tolist(), len(ids)]
    kinds = types[bounds[:-1]].tolist() if len(ids) else []
    merge = layout.spatial_merge_size
    out = torch.empty(3, len(ids), dtype=torch.long)
    current = 0
    top = -1
    for begin, end, kind in zip(bounds[:-1], bounds[1:], kinds, strict=True):
        if kind == TEXT:
            out[:, begin:end] = torch.arange(current, current + end - begin)
            current += end - begin
            top = max(top, current - 1)
            continue
        # A run of placeholder tokens holds one or more whole grids (several only when
        # vision blocks are glued together without separators).
        cursor = begin
        while cursor < end:
            interval: torch.Tensor | float = 1
            if kind == IMAGE:
                grid = images.take()
            else:
                grid = videos.take()
                seconds_per_grid = seconds.pop(0) if seconds else 1
                if layout.family is ModelFamily.QWEN2_5_VL:
                    interval = layout.tokens_per_second * seconds_per_grid
            block = _vision_positions(current, grid, merge, interval)
            if block.shape[1] > end - cursor:
                raise ValueError(
                    f"a {'image' if kind == IMAGE else 'video'} grid {list(grid)} needs "
                    f"{block.shape[1]} placeholder tokens but only {end - cursor} follow"
                )
            out[:, cursor : cursor + block.shape[1]] = block
            top = max(top, int(block.max()))
            cursor += block.shape[1]
            current += max(grid[1], grid[2]) // merge
    return out, top


def _video_grids(
    video_grid_thw: torch.Tensor | None, family: ModelFamily, second_per_grid_ts: Any
) -> tuple[list[tuple[int, int, int]], list[torch.Tensor | int]]:
    grids = _grid_rows(video_grid_thw, "video")
    if family is ModelFamily.QWEN3_VL:
        # Qwen3-VL places each frame on its own, between timestamp text tokens.
        return [(1, h, w) for t, h, w in grids for _ in range(t)], []
    if second_per_grid_ts is None:
        return grids, []
    seconds = torch.as_tensor(second_per_grid_ts, dtype=torch.float32).flatten()
    return grids, list(seconds)


def get_rope_index(
    input_ids: torch.Tensor,
    layout: MRopeLayout | Any,
    image_grid_thw: torch.Tensor | None = None,
    video_grid_thw: torch.Tensor | None = None,
    second_per_grid_ts: torch.Tensor | Sequence[float] | None = None,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """mRoPE position ids as transformers' ``model.model.get_rope_index`` computes them.

    ``input_ids`` is (batch, length) or (length,); ``layout`` an MRopeLayout or the model
    config. Returns ``(position_ids (3, batch, length), rope_deltas (batch, 1))``; padded
    positions (attention_mask 0) hold 0 and are skipped when assigning positions.
    """
    spec = _layout(layout)
    ids = input_ids.unsqueeze(0) if input_ids.ndim == 1 else input_ids
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be 1-D or 2-D, got shape {tuple(input_ids.shape)}")
    mask = None if attention_mask is None else attention_mask.reshape(ids.shape).bool()
    images = _Grids(_grid_rows(image_grid_thw, "image"), "image")
    video_rows, seconds = _video_grids(video_grid_thw, spec.family, second_per_grid_ts)
    videos = _Grids(video_rows, "video")
    positions = torch.zeros(3, *ids.shape, dtype=torch.long)
    deltas = []
    for row in range(ids.shape[0]):
        if mask is None:
            sequence, top = _sequence_positions(ids[row].cpu(), spec, images, videos, seconds)
            positions[:, row] = sequence
        else:
            keep = mask[row].cpu()
            tokens = ids[row].cpu()[keep]
            sequence, top = _sequence_positions(tokens, spec, images, videos, seconds)
            positions[:, row, keep] = sequence
        deltas.append(top + 1 - sequence.shape[1])
    images.check_all_used()
    videos.check_all_used()
    return positions.to(ids.device), torch.tensor(deltas, device=ids.device).unsqueeze(1)


@dataclass(frozen=True)
class PackedDoc:
    """One document (training sample) of a packed row: its token ids and vision grids."""

    input_ids: torch.Tensor
    """1-D token ids, placeholders already expanded."""
    image_grid_thw: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None
    second_per_grid_ts: torch.Tensor | None = None


def packed_position_ids(docs: Sequence[PackedDoc], layout: MRopeLayout | Any) -> torch.Tensor:
    """Position ids of one row packing ``docs`` back to back: a (4, total_length) LongTensor.

    Row 0 counts text positions from 0 in every document; transformers (5.x) reads it to build
    a block-diagonal causal mask when attention_mask is None and there is no cache. Rows 1-3
    are each document's own T, H, W mRoPE positions. Pass ``ids.unsqueeze(1)`` (4, 1, total)
    as ``position_ids`` with ``use_cache=False``; a packed forward then equals the per-document
    forwards.
    """
    if not docs:
        raise ValueError("packed_position_ids needs at least one document")
    spec = _layout(layout)
    total = 0
    for index, doc in enumerate(docs):
        if doc.input_ids.ndim != 1 or doc.input_ids.numel() == 0:
            raise ValueError(
                f"document {index}: input_ids must be a non-empty 1-D tensor, "
                f"got shape {tuple(doc.input_ids.shape)}"
            )
        total += doc.input_ids.numel()
    packed = torch.empty(4, total, dtype=torch.long)
    offset = 0
    for index, doc in enumerate(docs):
        images = _Grids(_grid_rows(doc.image_grid_thw, "image"), "image")
        video_rows, seconds = _video_grids(doc.video_grid_thw, spec.family, doc.second_per_grid_ts)
        videos = _Grids(video_rows, "video")
        try:
            mrope, _ = _sequence_positions(doc.input_ids.cpu(), spec, images, videos, seconds)
            images.check_all_used()
            videos.check_all_used()
        except ValueError as error:
            raise ValueError(f"document {index}: {error}") from None
        length = mrope.shape[1]
        packed[0, offset : offset + length] = torch.arange(length)
        packed[1:, offset : offset + length] = mrope
        offset += length
    return packed.to(docs[0].input_ids.device)
