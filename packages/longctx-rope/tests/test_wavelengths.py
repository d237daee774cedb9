from __future__ import annotations

import math

import pytest
import torch

from longctx_rope import describe_architecture
from longctx_rope.architectures import Architecture
from longctx_rope.methods import ntk_base
from longctx_rope.tiny import build_tiny_model
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


def test_raising_the_base_brings_low_frequencies_back_in_range() -> None:
    arch = Architecture("qwen2.5-vl", "qwen2_5_vl", 128, [16, 24, 24], False)  # type: ignore[arg-type]
    trained = dict.fromkeys("THW", 32768)
    target = dict.fromkeys("THW", 131072)
    same_base = frequency_table(arch, 1e6, 1e6, trained, target)
    assert same_base[0].wavelength == pytest.approx(2 * math.pi)
    assert same_base[-1].status == "extrapolating"
    assert same_base[-1].overshoot == pytest.approx(4.0)
    raised = frequency_table(arch, 8e6, 1e6, trained, target)
    assert all(f.wavelength >= f.original_wavelength for f in raised)
    assert raised[-1].status == "in-range" and raised[-1].overshoot < 1
    summary = {row["row"]: row for row in summarize_sections(raised)}
    assert summary["T"]["periodic"] == 16
    assert summary["W"]["in-range"] > 0
    # The NTK base for 4x is exactly the base that maps the lowest frequency onto its range.
    ntk = frequency_table(arch, ntk_base(1e6, 4, 128), 1e6, trained, target)
    assert ntk[-1].overshoot == pytest.approx(1.0)
    no_growth = frequency_table(arch, 1e6, 1e6, trained, trained)
    assert {f.status for f in no_growth} <= {"periodic", "in-range"}
