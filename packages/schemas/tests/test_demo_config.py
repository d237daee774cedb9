"""The recipe's optional demo section, pool inputs and evaluation data folder."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmprolong_schemas import Recipe
from mmprolong_schemas.recipe import DemoConfig


def test_recipes_default_to_no_demo_and_no_inputs() -> None:
    recipe = Recipe()
    assert recipe.demo is None
    assert recipe.pool.inputs == []
    assert recipe.eval.data_dir is None


def test_demo_section_validates() -> None:
    recipe = Recipe.model_validate({"demo": {"documents": 6, "held_out_documents": 2}})
    assert recipe.demo == DemoConfig(documents=6, held_out_documents=2)
    with pytest.raises(ValidationError, match="leaves no document"):
        DemoConfig(documents=3, held_out_documents=3)
    with pytest.raises(ValidationError, match="not a range of pages"):
        DemoConfig(pages=(9, 4))
