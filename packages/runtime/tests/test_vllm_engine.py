"""The vLLM engine sizing shared by qasynth's teacher and lvlm-judge's runner (their
contract-fake tests check the engines they build with it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmprolong_runtime.vllm_engine import (
    LONG_MAX_MODEL_LEN_ENV,
    EngineSizing,
    checkpoint_positions,
    long_context_env,
    size_engine,
)
from mmprolong_schemas import VisionTokenSpec


def test_engine_sizing() -> None:
    sizing = size_engine([1000, 130000, 5000], [3, 50, 7], 128, margin=64)
    assert sizing.max_model_len == 131072  # 130192 rounds up to 128K
    assert size_engine([131000], [1], 128, margin=64).max_model_len == 132096
    assert sizing.limit_mm_per_prompt == {"image": 50}
    assert size_engine([100], [0], 128).limit_mm_per_prompt == {"image": 1}
    assert size_engine([5000], [2], 100, cap=4096).max_model_len == 4096
    with pytest.raises(ValueError, match="at least one"):
        size_engine([], [], 128)


def test_engine_kwargs_overrides_and_growth() -> None:
    spec = VisionTokenSpec(min_pixels=3136, max_pixels=1003520)
    sizing = EngineSizing(max_model_len=8192, images=4)
    assert sizing.engine_kwargs(spec) == {
        "max_model_len": 8192,
        "limit_mm_per_prompt": {"image": 4},
        "mm_processor_kwargs": {"min_pixels": 3136, "max_pixels": 1003520},
    }
    # What the user's engine options set wins; what they leave is kept.
    assert sizing.overridden({"limit_mm_per_prompt": {"image": 15}}) == EngineSizing(8192, 15)
    assert sizing.overridden({"max_model_len": 32768}) == EngineSizing(32768, 4)
    assert sizing.overridden({"enforce_eager": True}) == sizing
    assert sizing.covering(EngineSizing(4096, 9)) == EngineSizing(8192, 9)


def test_long_context_needs_the_variable(tmp_path: Path) -> None:
    # A Qwen2.5-VL-style config.json: the text config's max_position_embeddings comes first.
    config = {"max_position_embeddings": 128000, "text_config": {"max_position_embeddings": 32768}}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert checkpoint_positions(tmp_path) == 32768
    assert checkpoint_positions(tmp_path / "absent") is None
    assert long_context_env(32768, 32768) == ({}, [])
    assert long_context_env(65536, None) == ({}, [])
    env, warnings = long_context_env(65536, 32768, hint="give a rope spec")
    assert env == {LONG_MAX_MODEL_LEN_ENV: "1"}
    assert "above the checkpoint's max_position_embeddings 32768" in warnings[0]
    assert warnings[0].endswith("(give a rope spec)")


def test_importing_the_module_does_not_import_vllm() -> None:
    code = "import sys, mmprolong_runtime.vllm_engine; print('vllm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
