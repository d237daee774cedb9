from __future__ import annotations

import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from transformers import Qwen2_5_VLTextConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from longctx_rope import RopeSpec, make_spec, spec_from_recipe
from longctx_rope.methods import (
    LinearSpec,
    NtkBaseSpec,
    SetBaseSpec,
    YarnSpec,
    default_inv_freq,
    ntk_base,
)
from mmprolong_schemas.recipe import RopeConfig, RopeMethod


@pytest.mark.parametrize(("factor", "expected"), [(2, 2.022e6), (4, 4.089e6), (8, 8.268e6)])
def test_ntk_base_values_of_the_recipe(factor: int, expected: float) -> None:
    assert round(ntk_base(1e6, factor, 128), -3) == expected
    spec = NtkBaseSpec(original_context=32768, target_context=32768 * factor)
    assert round(spec.base, -3) == expected


def test_ntk_rounding_gives_the_recipe_base() -> None:
    spec = NtkBaseSpec(original_context=32768, target_context=131072, round_to=1e6)
    assert spec.base == 4e6
    assert round(spec.exact_base, -3) == 4.089e6


def test_make_spec_with_explicit_base_checks_the_rule() -> None:
    spec = make_spec(
        "ntk-base", original_base=1e6, original_context=32768, target_context=131072, base=4e6
    )
    assert spec.base == 4e6
    with pytest.raises(ValueError, match="not the requested 5e"):
        make_spec(
            "ntk-base", original_base=1e6, original_context=32768, target_context=131072, base=5e6
        )


def test_make_spec_kinds() -> None:
    common = {"original_base": 1e6, "original_context": 32768, "target_context": 131072}
    assert isinstance(make_spec("set-base", base=8e6, **common), SetBaseSpec)
    with pytest.raises(ValueError, match="explicit base"):
        make_spec("set-base", **common)
    linear = make_spec("linear", **common)
    assert isinstance(linear, LinearSpec) and linear.factor == 4
    yarn = make_spec("yarn", factor=2.5, **common)
    assert isinstance(yarn, YarnSpec) and yarn.factor == 2.5
    with pytest.raises(ValueError, match="keeps the base"):
        make_spec("linear", base=4e6, **common)


def test_recipe_rope_config_gives_4e6() -> None:
    spec = spec_from_recipe(RopeConfig())
    assert isinstance(spec, NtkBaseSpec) and spec.base == 4e6
    assert spec_from_recipe(RopeConfig(method=RopeMethod.SET_BASE, base=2e6)).base == 2e6


@pytest.mark.parametrize(
    "spec",
    [
        NtkBaseSpec(round_to=1e6),
        SetBaseSpec(new_base=8e6),
        LinearSpec(),
        YarnSpec(original_max_position=4096, beta_fast=16),
    ],
)
def test_specs_round_trip_as_json(spec: RopeSpec) -> None:
    adapter: TypeAdapter[RopeSpec] = TypeAdapter(RopeSpec)
    assert adapter.validate_json(adapter.dump_json(spec)) == spec


def test_specs_reject_bad_values() -> None:
    with pytest.raises(ValidationError):
        SetBaseSpec(new_base=-1)
    with pytest.raises(ValidationError, match="beta_fast"):
        YarnSpec(beta_fast=1, beta_slow=2)
    with pytest.raises(ValidationError):
        NtkBaseSpec(unknown=1)  # type: ignore[call-arg]


def _text_config(
    rope_parameters: dict[str, object], max_positions: int = 32768
) -> Qwen2_5_VLTextConfig:
    return Qwen2_5_VLTextConfig(
        hidden_size=256,
        num_attention_heads=2,
        num_hidden_layers=1,
        max_position_embeddings=max_positions,
        rope_parameters={**rope_parameters, "mrope_section": [16, 24, 24]},
    )


def test_default_and_linear_match_transformers() -> None:
    expected, _ = ROPE_INIT_FUNCTIONS["linear"](
        _text_config({"rope_type": "linear", "rope_theta": 1e6, "factor": 4.0}), "cpu"
    )
    assert torch.allclose(LinearSpec().inv_freq(128), expected, rtol=1e-6, atol=0)
    assert torch.allclose(default_inv_freq(1e6, 128) / 4, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    ("factor", "original", "beta_fast", "beta_slow"),
    [(4.0, 32768, 32, 1), (2.0, 4096, 16, 2), (8.0, 3000, 32, 1)],
)
def test_yarn_matches_transformers(
    factor: float, original: int, beta_fast: float, beta_slow: float
) -> None:
    spec = YarnSpec(
        explicit_factor=factor,
        original_max_position=original,
        beta_fast=beta_fast,
        beta_slow=beta_slow,
    )
    config = _text_config(
        {
            "rope_type": "yarn",
            "rope_theta": 1e6,
            "factor": factor,
            "original_max_position_embeddings": original,
            "beta_fast": beta_fast,
            "beta_slow": beta_slow,
        },
        max_positions=int(original * factor),
    )
    expected, attention = ROPE_INIT_FUNCTIONS["yarn"](config, "cpu")
    assert torch.allclose(spec.inv_freq(128), expected, rtol=1e-6, atol=0)
    assert spec.attention_scaling() == pytest.approx(attention)


def test_yarn_keeps_high_and_interpolates_low_frequencies() -> None:
    spec = YarnSpec()
    ratio = spec.inv_freq(128) / default_inv_freq(spec.base, 128)
    assert ratio[0] == 1.0
    assert ratio[-1] == pytest.approx(1 / spec.factor)
