"""Random packed rows for self-checks and benchmarks: several documents, several images.

Token ids, images and answer spans are random; position ids are longctx-rope's packed 4-row
mRoPE ids (the model's ``get_rope_index`` per document, text row restarting at 0 per document).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from longctx_rope.positions import PackedDoc, packed_position_ids
from seqpar_train.batch import IGNORE_INDEX, PackedRow

ANSWER_VOCAB = 32

DocumentShape = tuple[int, Sequence[tuple[int, int]], int]
"""(prompt text tokens, image grids (h, w) in patches, answer tokens; 0 = no labels)."""


def synthetic_row(config: Any, documents: Sequence[DocumentShape], seed: int = 0) -> PackedRow:
    """A packed row for an HF Qwen-VL ``config``; same seed, same row."""
    vision = config.vision_config
    merge = vision.spatial_merge_size
    patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    text_vocab = min(int(config.vision_start_token_id), int(config.image_token_id)) - 1
    generator = torch.Generator().manual_seed(seed)

    ids_parts, label_parts, docs, lens = [], [], [], []
    pixels, grids = [], []
    for prompt, images, answer in documents:
        pieces = [torch.randint(0, text_vocab, (prompt,), generator=generator)]
        doc_grids = []
        for h, w in images:
            if h % merge or w % merge:
                raise ValueError(f"image grid {h}x{w} is not a multiple of the merge size {merge}")
            tokens = h * w // (merge * merge)
            pieces += [
                torch.tensor([config.vision_start_token_id]),
                torch.full((tokens,), config.image_token_id),
                torch.tensor([config.vision_end_token_id]),
            ]
            doc_grids.append([1, h, w])
            pixels.append(torch.randn((h * w, patch_dim), generator=generator))
        # Answers use a small sub-vocabulary, so a demo run's loss visibly falls.
        answer_ids = torch.randint(0, ANSWER_VOCAB, (answer,), generator=generator)
        ids = torch.cat([*pieces, answer_ids])
        labels = torch.full_like(ids, IGNORE_INDEX)
        if answer:
            labels[-answer:] = answer_ids
        grid = torch.tensor(doc_grids) if doc_grids else None
        docs.append(PackedDoc(input_ids=ids, image_grid_thw=grid))
        ids_parts.append(ids)
        label_parts.append(labels)
        lens.append(ids.numel())
        grids += doc_grids
    return PackedRow(
        input_ids=torch.cat(ids_parts),
        labels=torch.cat(label_parts),
        position_ids=packed_position_ids(docs, config),
        doc_lens=lens,
        pixel_values=torch.cat(pixels) if pixels else None,
        image_grid_thw=torch.tensor(grids) if grids else None,
    )


MULTI_IMAGE_DOCS: list[DocumentShape] = [
    (7, [(4, 4), (4, 6)], 5),
    (5, [], 6),
    (9, [(6, 4)], 4),
    (4, [(4, 4), (2, 4), (4, 2)], 7),
]
"""A small row of four documents, one without image, six images of different sizes."""
