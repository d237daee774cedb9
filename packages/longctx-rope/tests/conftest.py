from __future__ import annotations

import pytest
from transformers import PreTrainedModel, ProcessorMixin

from longctx_rope import build_tiny_model

FAMILIES = ("qwen2.5-vl", "qwen3-vl")


@pytest.fixture(scope="session", params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


_MODELS: dict[str, tuple[PreTrainedModel, ProcessorMixin]] = {}


@pytest.fixture()
def tiny(family: str) -> tuple[PreTrainedModel, ProcessorMixin]:
    """One tiny model per family for the whole session (tests must not mutate it)."""
    if family not in _MODELS:
        _MODELS[family] = build_tiny_model(family, seed=0)
    return _MODELS[family]
