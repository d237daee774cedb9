"""A packed training row, and the sequence-parallel view of it.

Everything that depends on the whole row (document boundaries, shifted labels, padding to a
multiple of the SP size) is computed here, on the full sequence, before any rank takes its
slice: a rank never sees the next token of its last position otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

IGNORE_INDEX = -100


@dataclass
class PackedRow:
    """Documents packed end to end into one row.

    input_ids, labels: (S,) with labels = input_ids at answer tokens, IGNORE_INDEX elsewhere
    (not yet shifted); position_ids: (4, S) = [text positions restarting per document; T; H; W];
    doc_lens: the length of every document in order (sum = S); image_grid_thw: every image
    of the row, in order of appearance; pixel_values: the patches of those images, in the
    same order. When ``pixel_share`` is (rank, sp), pixel_values holds only the images SP rank
    ``rank`` of ``sp`` encodes (``seqpar_train.vision.assign_images`` over the grids), or None
    if it encodes none: a rank renders only its share. ``failed_docs``: documents whose pages
    this rank could not render; their pixels are zeros and their labels are ignored.
    ``left_out_tokens``: tokens of the row's samples that cutting left out (``fill="cut"``).
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    doc_lens: list[int]
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    sample_ids: list[str] = field(default_factory=list)
    pixel_share: tuple[int, int] | None = None
    failed_docs: list[int] = field(default_factory=list)
    left_out_tokens: int = 0

    def __post_init__(self) -> None:
        length = int(self.input_ids.shape[0])
        if self.labels.shape != self.input_ids.shape:
            raise ValueError(f"labels {tuple(self.labels.shape)} != input_ids ({length},)")
        if tuple(self.position_ids.shape) != (4, length):
            raise ValueError(
                f"position_ids must be (4, {length}), got {tuple(self.position_ids.shape)}"
            )
        if sum(self.doc_lens) != length or any(n <= 0 for n in self.doc_lens):
            raise ValueError(f"doc_lens {self.doc_lens} do not partition {length} tokens")
        if self.pixel_values is not None and self.image_grid_thw is None:
            raise ValueError("pixel_values come with image_grid_thw")
        whole = self.pixel_share is None
        if whole and self.image_grid_thw is not None and self.pixel_values is None:
            raise ValueError("image_grid_thw without pixel_values (and no pixel_share)")
        if any(not 0 <= d < len(self.doc_lens) for d in self.failed_docs):
            raise ValueError(f"failed_docs {self.failed_docs} name documents the row lacks")

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def cu_seqlens(self) -> list[int]:
        bounds = [0]
        for n in self.doc_lens:
            bounds.append(bounds[-1] + n)
        return bounds


def mask_documents(row: PackedRow, docs: list[int]) -> PackedRow:
    """``row`` with every label of documents ``docs`` ignored (and them listed as failed)."""
    if not docs:
        return row
    labels = row.labels.clone()
    cu = row.cu_seqlens
    for doc in docs:
        labels[cu[doc] : cu[doc + 1]] = IGNORE_INDEX
    return replace(row, labels=labels, failed_docs=sorted(set(row.failed_docs) | set(docs)))


def shift_labels(labels: torch.Tensor, cu_seqlens: list[int]) -> torch.Tensor:
    """Target of position i = label of i+1 inside the same document; IGNORE_INDEX at every
    document's last token, so no document is trained to predict the next one's first token."""
    shifted = torch.full_like(labels, IGNORE_INDEX)
    shifted[:-1] = labels[1:]
    for end in cu_seqlens[1:]:
        shifted[end - 1] = IGNORE_INDEX
    return shifted


@dataclass
class SequenceShard:
    """One SP rank's slice of a padded row, with the full-row facts it needs."""

    input_ids: torch.Tensor  # (S_local,)
    shifted_labels: torch.Tensor  # (S_local,)
    position_ids: torch.Tensor  # (4, S_local)
    cu_seqlens: list[int]  # of the full padded row
    start: int
    full_input_ids: torch.Tensor  # (S_padded,): image token positions of every rank
    padded_length: int
    pad_tokens: int


def shard_row(row: PackedRow, sp_rank: int, sp_size: int, pad_token_id: int) -> SequenceShard:
    """Pad ``row`` to a multiple of ``sp_size`` and take rank ``sp_rank``'s contiguous slice.

    The padding is its own document (its positions restart at 0) with no labels, so it
    changes neither attention nor loss of the real documents.
    """
    if not 0 <= sp_rank < sp_size:
        raise ValueError(f"sp_rank {sp_rank} is outside an SP group of {sp_size}")
    length = row.num_tokens
    pad = (-length) % sp_size
    cu = row.cu_seqlens
    shifted = shift_labels(row.labels, cu)
    input_ids, positions = row.input_ids, row.position_ids
    if pad:
        input_ids = torch.cat([input_ids, input_ids.new_full((pad,), pad_token_id)])
        shifted = torch.cat([shifted, shifted.new_full((pad,), IGNORE_INDEX)])
        pad_pos = torch.arange(pad, dtype=positions.dtype).expand(4, pad)
        positions = torch.cat([positions, pad_pos.to(positions.device)], dim=1)
        cu = [*cu, length + pad]
    local = (length + pad) // sp_size
    start = sp_rank * local
    return SequenceShard(
        input_ids=input_ids[start : start + local],
        shifted_labels=shifted[start : start + local],
        position_ids=positions[:, start : start + local],
        cu_seqlens=cu,
        start=start,
        full_input_ids=input_ids,
        padded_length=length + pad,
        pad_tokens=pad,
    )


def to_device(row: PackedRow, device: torch.device) -> PackedRow:
    return replace(
        row,
        input_ids=row.input_ids.to(device),
        labels=row.labels.to(device),
        position_ids=row.position_ids.to(device),
        pixel_values=None if row.pixel_values is None else row.pixel_values.to(device),
        image_grid_thw=None if row.image_grid_thw is None else row.image_grid_thw.to(device),
    )
