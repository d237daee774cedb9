"""Random rows of random documents, for demos and smoke runs without PDFs."""

from __future__ import annotations

from typing import Any

import torch

from seqpar_train.batch import PackedRow
from seqpar_train.config import SyntheticData
from seqpar_train.synthetic import synthetic_row
from seqpar_train.vision import take_pixel_share


class SyntheticRows:
    """Row ``g`` is a deterministic function of (seed, g): resuming needs only the index.

    Document lengths vary per row (70-100% of the configured prompt), so rows exercise
    packing boundaries at different places."""

    def __init__(self, model_config: Any, settings: SyntheticData, max_length: int, seed: int):
        self.model_config = model_config
        self.settings = settings
        self.max_length = max_length
        self.seed = seed
        merge = model_config.vision_config.spatial_merge_size
        h, w = settings.image_grid
        self.image_tokens = (h // merge) * (w // merge) + 2
        longest = settings.docs_per_row * (
            settings.prompt_tokens
            + settings.answer_tokens
            + settings.images_per_doc * self.image_tokens
        )
        if longest > max_length:
            raise ValueError(
                f"synthetic rows of {longest} tokens do not fit max_length {max_length}"
            )

    def _prompts(self, index: int) -> list[int]:
        s = self.settings
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        low = max(1, s.prompt_tokens * 7 // 10)
        return [
            int(torch.randint(low, s.prompt_tokens + 1, (1,), generator=generator))
            for _ in range(s.docs_per_row)
        ]

    def row_tokens(self, index: int) -> int:
        s = self.settings
        per_doc = s.images_per_doc * self.image_tokens + s.answer_tokens
        return sum(prompt + per_doc for prompt in self._prompts(index))

    def row(self, index: int, sp_rank: int = 0, sp: int = 1) -> tuple[PackedRow, list[str]]:
        """Row ``index``; with ``sp`` > 1 it keeps the pixels of SP rank ``sp_rank``'s images."""
        s = self.settings
        docs = [
            (prompt, [s.image_grid] * s.images_per_doc, s.answer_tokens)
            for prompt in self._prompts(index)
        ]
        row = synthetic_row(self.model_config, docs, seed=self.seed * 1_000_003 + index)
        return (take_pixel_share(row, sp_rank, sp) if sp > 1 else row), []

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "synthetic", "seed": self.seed}
