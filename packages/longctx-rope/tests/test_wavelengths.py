from __future__ import annotations

import math

import pytest
import torch

from longctx_rope import build_tiny_model, describe_architecture
from longctx_rope.architectures import Architecture
from longctx_rope.wavelengths import frequency_table, section_of_frequencies, summarize_sections


def test_sections_match_the_rotary_embedding(family: str) -> None:
    """Move one mRoPE row at a time through transformers' rotary embedding: the frequencies
    whose angle changes are the ones that row drives."""
    model, _ = build_tiny_model(family)
    rotary = model.model.language_model.rotary_emb
    arch = describe_architecture(model.config.to_dict())
    x = torch.zeros(1, 1, 1)
    driven = {}
    for row_index, row in enumerate("THW"):
        positions = torch.zeros(3, 1, 1, dtype=torch.long)
        positions[row_index] = 1
        _, sin = rotary(x, positions)
        driven[row] = sin[0, 0, : arch.rotary_pairs] != 0
    rows = [next(r for r in "THW" if driven[r][i]) for i in range(arch.rotary_pairs)]
    assert sum(int(driven[r].sum()) for r in "THW") == arch.rotary_pairs
    assert section_of_frequencies(arch) == rows


def test_real_qwen25_layout() -> None:
    arch = Architecture("qwen2.5-vl", "qwen2_5_vl", 128, [16, 24, 24], False)  # type: ignore[arg-type]
    rows = section_of_frequencies(arch)
    assert rows[:16] == ["T"] * 16 and rows[16:40] == ["H"] * 24 and rows[40:] == ["W"] * 24


def test_raising_the_base_moves_frequencies_to_extrapolating_or_back() -> None:
    arch = Architecture("qwen2.5-vl", "qwen2_5_vl", 128, [16, 24, 24], False)  # type: ignore[arg-type]
    trained = dict.fromkeys("THW", 32768)
    target = dict.fromkeys("THW", 131072)
    table = frequency_table(arch, 4e6, 1e6, trained, target)
    assert table[0].wavelength == pytest.approx(2 * math.pi)
    assert all(f.wavelength >= f.original_wavelength for f in table)
    summary = {row["row"]: row for row in summarize_sections(table)}
    assert summary["T"]["periodic"] == 16
    assert summary["W"]["extrapolating"] == 24
    same = frequency_table(arch, 4e6, 1e6, trained, trained)
    assert {f.status for f in same} <= {"periodic", "in-range"}
