"""The recipe's optional SFT stage settings (the OCR ablations' extra short-context SFT)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmprolong_schemas import Recipe
from mmprolong_schemas.recipe import SftConfig
from mmprolong_schemas.units import B, K


def test_no_sft_stage_unless_train_asks_for_it() -> None:
    assert Recipe().sft is None and Recipe().sft_stage is None
    dormant = Recipe.model_validate({"sft": {"token_budget": "16K"}})
    assert dormant.sft == SftConfig(token_budget=16 * K) and dormant.sft_stage is None


def test_extra_sft_uses_the_papers_settings_when_none_are_given() -> None:
    recipe = Recipe.model_validate({"train": {"extra_sft": True}})
    stage = recipe.sft_stage
    assert stage is not None and stage.token_budget == 5 * B
    # Row length and batch follow LongPT unless the section sets them.
    assert stage.rows(recipe.train) == (128 * K, 4 * 2**20)


def test_sft_settings_are_checked_against_the_recipe() -> None:
    recipe = Recipe.model_validate(
        {"train": {"extra_sft": True}, "sft": {"max_length": "32K", "global_batch_tokens": "1M"}}
    )
    assert recipe.sft_stage is not None
    assert recipe.sft_stage.rows(recipe.train) == (32 * K, 2**20)
    with pytest.raises(ValidationError, match="whole number of 24576-token rows"):
        Recipe.model_validate({"sft": {"max_length": "24K", "global_batch_tokens": "1M"}})
    with pytest.raises(ValidationError, match="longer than rope.target_context"):
        Recipe.model_validate({"sft": {"max_length": "256K", "global_batch_tokens": "256K"}})
    with pytest.raises(ValidationError, match="final_lr is above"):
        Recipe.model_validate({"sft": {"schedule": {"peak_lr": 1e-6, "final_lr": 1e-5}}})
    with pytest.raises(ValidationError):
        Recipe.model_validate({"sft": {"budget": "5B"}})
