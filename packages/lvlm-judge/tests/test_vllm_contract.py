"""The vllm runner at long context against a contract fake of vLLM's offline API.

vLLM cannot run here (no GPU). The fake restates what the runner relies on, from vLLM's source:
- ``LLM(model, *, hf_overrides=None, mm_processor_kwargs=None, **engine_args)``
  (vllm/entrypoints/llm.py, LLM.__init__); unknown engine arguments are refused;
- a max_model_len above the derived maximum (max_position_embeddings, after hf_overrides) is
  a ValueError unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 (vllm/config.py, _get_and_verify_max_len);
- ``limit_mm_per_prompt`` is a dict of modality -> count, and a prompt with more images is
  refused;
- ``generate(prompts, sampling_params, use_tqdm=...)`` validates every prompt first and raises
  "The decoder prompt (length N) is longer than the maximum model length of M" for one that is
  too long, failing the whole call (vllm/v1/engine/processor.py, _validate_model_input);
- each image's tokens follow the processor's smart_resize with the engine's
  mm_processor_kwargs min/max pixels (Qwen2.5-VL: factor 28), else the checkpoint's defaults.
"""

from __future__ import annotations

import json
import os
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lvlm_judge.context import ContextResolver
from lvlm_judge.datasets import load_data
from lvlm_judge.factory import make_runner
from lvlm_judge.prompting import build_prompt
from lvlm_judge.runners.base import GenerationRequest, chat_text
from lvlm_judge.runners.vllm_runner import engine_settings, vllm_request
from lvlm_judge.testing import make_doc_benchmark
from mmprolong_runtime.vllm_engine import LONG_MAX_MODEL_LEN_ENV, EngineSizing
from mmprolong_schemas import VisionTokenSpec, image_tokens
from mmprolong_schemas.units import K

pytestmark = pytest.mark.slow

ENGINE_ARGS = {"max_model_len", "limit_mm_per_prompt"}
"""The EngineArgs fields the runner passes besides LLM's named keywords."""
DEFAULT_PIXELS = (3136, 12845056)
"""Qwen2.5-VL's preprocessor defaults, what the engine uses without mm_processor_kwargs."""


@dataclass
class FakeCompletion:
    text: str
    token_ids: list[int]


@dataclass
class FakeOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeCompletion]


@dataclass
class FakeSamplingParams:
    temperature: float = 1.0
    max_tokens: int = 16


@dataclass
class FakeLLM:
    model: str
    max_model_len: int
    limit_mm_per_prompt: dict[str, int]
    hf_overrides: dict[str, Any]
    mm_processor_kwargs: dict[str, Any] | None
    tokenizer: Any
    calls: list[int] = field(default_factory=list)
    extra_tokens: dict[str, int] = field(default_factory=dict)

    def prompt_length(self, prompt: dict[str, Any]) -> int:
        images = prompt.get("multi_modal_data", {}).get("image", [])
        if len(images) > self.limit_mm_per_prompt.get("image", 1):
            raise ValueError(f"You set image={self.limit_mm_per_prompt['image']} ...")
        text = prompt["prompt"]
        if text.count("<|image_pad|>") != len(images):
            raise ValueError("the prompt's image placeholders do not match its images")
        kwargs = self.mm_processor_kwargs or {}
        spec = VisionTokenSpec(
            min_pixels=kwargs.get("min_pixels", DEFAULT_PIXELS[0]),
            max_pixels=kwargs.get("max_pixels", DEFAULT_PIXELS[1]),
        )
        expanded = sum(image_tokens(image.height, image.width, spec) for image in images)
        length = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        marker = next((k for k in self.extra_tokens if k in text), None)
        return length - len(images) + expanded + (self.extra_tokens[marker] if marker else 0)

    def generate(
        self, prompts: list[dict[str, Any]], sampling_params: FakeSamplingParams, *, use_tqdm: bool
    ) -> list[FakeOutput]:
        self.calls.append(len(prompts))
        lengths = [self.prompt_length(prompt) for prompt in prompts]
        for length in lengths:
            if length > self.max_model_len:
                raise ValueError(
                    f"The decoder prompt (length {length}) is longer than the maximum model "
                    f"length of {self.max_model_len}."
                )
        return [
            FakeOutput(list(range(n)), [FakeCompletion("Answer: 12", [1, 2, 3])]) for n in lengths
        ]


def fake_vllm(engines: list[FakeLLM]) -> types.ModuleType:
    from transformers import AutoTokenizer

    def llm(model: str, *, hf_overrides: Any = None, mm_processor_kwargs: Any = None,
            **engine_args: Any) -> FakeLLM:  # fmt: skip
        unknown = set(engine_args) - ENGINE_ARGS
        if unknown:
            raise TypeError(f"EngineArgs has no field {sorted(unknown)}")
        config = json.loads((Path(model) / "config.json").read_text())
        text = config.get("text_config") or config
        derived = (hf_overrides or {}).get("max_position_embeddings") or text[
            "max_position_embeddings"
        ]
        max_model_len = engine_args["max_model_len"]
        allowed = os.environ.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "").lower() in {"1", "true"}
        if max_model_len > derived and not allowed:
            raise ValueError(
                f"User-specified max_model_len ({max_model_len}) is greater than the derived "
                f"max_model_len (max_position_embeddings={derived}). To allow overriding this "
                "maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1."
            )
        limit = engine_args["limit_mm_per_prompt"]
        assert isinstance(limit, dict) and all(isinstance(v, int) for v in limit.values())
        engine = FakeLLM(
            model, max_model_len, limit, hf_overrides or {}, mm_processor_kwargs,
            AutoTokenizer.from_pretrained(model),
        )  # fmt: skip
        engines.append(engine)
        return engine

    module = types.ModuleType("vllm")
    module.LLM = llm  # type: ignore[attr-defined]
    module.SamplingParams = FakeSamplingParams  # type: ignore[attr-defined]
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tiny = pytest.importorskip("longctx_rope.tiny")
    path: Path = tiny.save_tiny_checkpoint("qwen2.5-vl", tmp_path_factory.mktemp("ckpt") / "t")
    return path  # text_config.max_position_embeddings = 32768


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeLLM]]:
    made: list[FakeLLM] = []
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm(made))
    monkeypatch.delenv("VLLM_ALLOW_LONG_MAX_MODEL_LEN", raising=False)
    yield made
    os.environ.pop("VLLM_ALLOW_LONG_MAX_MODEL_LEN", None)


def test_engine_settings_past_the_checkpoint_length(tiny: Path) -> None:
    from longctx_rope import make_spec

    spec = VisionTokenSpec(min_pixels=3136, max_pixels=1003520)
    sizing = EngineSizing(256 * K, 300)
    kwargs, env, warnings = engine_settings(tiny, sizing, spec)
    assert kwargs["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 1003520}
    assert env == {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}
    assert "above the checkpoint's max_position_embeddings 32768" in warnings[0]
    assert "hf_overrides" not in kwargs
    rope = make_spec("set-base", original_base=1e6, original_context=32768,
                     target_context=131072, base=4e6)  # fmt: skip
    kwargs, env, warnings = engine_settings(tiny, sizing, spec, rope)
    overrides = kwargs["hf_overrides"]
    assert overrides["rope_theta"] == 4e6
    assert overrides["max_position_embeddings"] == 256 * K
    assert overrides["rope_scaling"]["type"] == "mrope" or (
        overrides["rope_scaling"].get("rope_type") == "mrope"
    )
    assert env == {} and warnings == []


def _requests(tmp_path: Path) -> tuple[ContextResolver, list[Any]]:
    data = make_doc_benchmark(tmp_path, datasets=("mmlongdoc",), docs=2, pages=2,
                              image_size=(560, 700))  # fmt: skip
    items = load_data([data], lengths=[8 * K], datasets=["mmlongdoc"], subset="all")
    return ContextResolver(tmp_path / "mmlb_image", spec=VisionTokenSpec()), items


def test_vllm_runner_past_the_checkpoint_length_and_too_long_prompts(
    tiny: Path, tmp_path: Path, engines: list[FakeLLM]
) -> None:
    resolver, items = _requests(tmp_path)
    runner: Any = make_runner("vllm", tiny, resolver, items, max_new_tokens=8)
    (engine,) = engines
    # The engine is sized from the estimate, which is what the engine counts (chat template,
    # page labels, question, prefill and images at the engine's min/max pixels).
    requests = [GenerationRequest(i.item_id, build_prompt(i)) for i in items]
    for request in requests[:3]:
        entry = vllm_request(request, lambda p: chat_text(runner.processor, p), resolver)
        assert runner.estimates[request.item_id] == engine.prompt_length(entry)
    assert engine.mm_processor_kwargs == {"min_pixels": 3136, "max_pixels": 12845056}
    predictions = list(runner.generate(requests))
    assert [p.error for p in predictions] == [None] * len(items)

    # A cap below the longest prompt: those items fail alone, with a reason; the rest run.
    lengths = sorted(runner.estimates.values())
    cap = (lengths[0] + lengths[-1]) // 2 + 8
    engines.clear()
    capped: Any = make_runner("vllm", tiny, resolver, items, max_new_tokens=8, max_model_len=cap)
    outcomes = {p.item_id: p for p in capped.generate(requests)}
    too_long = {k for k, v in capped.estimates.items() if v > cap - 8}
    assert too_long and len(too_long) < len(items)
    assert {k for k, p in outcomes.items() if p.error} == too_long
    assert all("PromptTooLong" in (outcomes[k].error or "") for k in too_long)

    # One prompt the engine refuses although the estimate fits: only that item fails.
    engines.clear()
    loose: Any = make_runner("vllm", tiny, resolver, items, max_new_tokens=8)
    (engine,) = engines
    engine.extra_tokens["How many rows"] = 10**6
    outcomes = {p.item_id: p for p in loose.generate(requests)}
    failed = {k for k, p in outcomes.items() if p.error}
    assert failed == {i.item_id for i in items if "How many rows" in i.question}
    assert all("longer than the maximum model length" in outcomes[k].error for k in failed)  # type: ignore[operator]


def test_long_engine_needs_the_variable_or_a_rope_spec(
    tiny: Path, tmp_path: Path, engines: list[FakeLLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    from longctx_rope import make_spec

    resolver, items = _requests(tmp_path)
    vllm = sys.modules["vllm"]
    with pytest.raises(ValueError, match="VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"):
        vllm.LLM(str(tiny), max_model_len=64 * K, limit_mm_per_prompt={"image": 1})
    # The runner at 64K on a 32K checkpoint: the variable is set for the engine.
    big = EngineSizing(64 * K, 2)
    monkeypatch.setattr("lvlm_judge.factory.size_engine", lambda *a, **k: big)
    assert LONG_MAX_MODEL_LEN_ENV not in os.environ
    make_runner("vllm", tiny, resolver, items)
    assert os.environ["VLLM_ALLOW_LONG_MAX_MODEL_LEN"] == "1"
    os.environ.pop("VLLM_ALLOW_LONG_MAX_MODEL_LEN")
    # With a rope spec (an extended model) hf_overrides raise the limit: no variable needed.
    rope = make_spec("set-base", original_base=1e6, original_context=32768,
                     target_context=131072, base=4e6)  # fmt: skip
    make_runner("vllm", tiny, resolver, items, rope_spec=rope)
    assert "VLLM_ALLOW_LONG_MAX_MODEL_LEN" not in os.environ
    assert engines[-1].hf_overrides["rope_theta"] == 4e6
    assert engines[-1].max_model_len == 64 * K
