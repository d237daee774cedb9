"""Random packed rows for self-checks and benchmarks: several documents, several images.

Token ids, images and answer spans are random; position ids come from the model's own
``get_rope_index`` applied to each document, with the text row restarting at 0 per document,
which is exactly what a packed Qwen-VL row needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seqpar_train.batch import IGNORE_INDEX, PackedRow

DocumentShape = tuple[int, Sequence[tuple[int, int]], int]
"""(prompt text tokens, image grids (h, w) in patches, answer tokens)."""


def synthetic_row(
    model: torch.nn.Module, documents: Sequence[DocumentShape], seed: int = 0
) -> PackedRow:
    config = model.config
    vision = config.vision_config
    merge = vision.spatial_merge_size
    patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    text_vocab = min(int(config.vision_start_token_id), int(config.image_token_id)) - 1
    generator = torch.Generator().manual_seed(seed)

    ids_parts, label_parts, position_parts, lens = [], [], [], []
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
        answer_ids = torch.randint(0, text_vocab, (answer,), generator=generator)
        ids = torch.cat([*pieces, answer_ids])
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[-answer:] = answer_ids
        grid = torch.tensor(doc_grids) if doc_grids else None
        token_types = (ids == config.image_token_id).int()
        mrope, _ = model.model.get_rope_index(ids[None], token_types[None], image_grid_thw=grid)
        text = torch.arange(ids.numel())[None, None]
        position_parts.append(torch.cat([text, mrope], dim=0)[:, 0])
        ids_parts.append(ids)
        label_parts.append(labels)
        lens.append(ids.numel())
        grids += doc_grids
    return PackedRow(
        input_ids=torch.cat(ids_parts),
        labels=torch.cat(label_parts),
        position_ids=torch.cat(position_parts, dim=1),
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
