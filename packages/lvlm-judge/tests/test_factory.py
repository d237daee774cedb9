"""Runner and judge construction shared by the CLI and the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lvlm_judge import factory
from lvlm_judge.context import ContextResolver
from lvlm_judge.judge.llm import LLMJudge
from lvlm_judge.runners import EngineSizing, OpenAIRunner
from mmprolong_schemas import EvalItem, TextPart


def item(words: int, images: int) -> EvalItem:
    context: list[Any] = [TextPart(text="w " * words)]
    context += [{"type": "image", "path": f"p{i}.png"} for i in range(images)]
    return EvalItem(
        item_id=f"i{words}", dataset="d", length=8192, context=context, question="q?",
        answer="a", answer_format="String",
    )  # fmt: skip


def test_vllm_engine_is_sized_from_the_longest_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, Any] = {}

    class RecordingRunner:
        def __init__(self, model: str, resolver: Any, sizing: EngineSizing, **options: Any):
            built.update(model=model, sizing=sizing, options=options)

    monkeypatch.setattr(factory, "VLLMRunner", RecordingRunner)
    monkeypatch.setattr(factory, "text_token_counter", lambda _: lambda text: len(text.split()))
    resolver = ContextResolver(Path("."))
    monkeypatch.setattr(
        resolver, "tokens", lambda part, count: 100 if part.type == "image" else count(part.text)
    )
    logged: list[str] = []
    items = [item(50, 2), item(3000, 1)]
    factory.make_runner("vllm", "ckpt", resolver, items, max_new_tokens=128, log=logged.append)
    # Longest prompt: 3000 words + 1 image (100) + the question (1) = 3101, plus answer and margin.
    assert built["sizing"].max_model_len == 4096 >= 3101 + 128 + factory.VLLM_MARGIN_TOKENS
    assert built["sizing"].limit_mm_per_prompt == {"image": 2}
    assert built["options"]["max_new_tokens"] == 128
    assert "max_model_len 4096" in logged[0]


def test_vllm_needs_items_and_unknown_runners_are_named() -> None:
    resolver = ContextResolver(Path("."))
    with pytest.raises(ValueError, match="needs the evaluation items"):
        factory.make_runner("vllm", "ckpt", resolver, [])
    with pytest.raises(ValueError, match="unknown runner 'tgi'; expected one of transformers"):
        factory.make_runner("tgi", "ckpt", resolver)


def test_openai_runner_and_llm_judge_read_the_server_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    runner = factory.make_runner(
        "openai", "served-model", ContextResolver(tmp_path), base_url="http://127.0.0.1:1/v1"
    )
    assert isinstance(runner, OpenAIRunner)
    judge = factory.make_llm_judge(
        "judge-m", tmp_path / "cache.sqlite", base_url="http://127.0.0.1:2/v1"
    )
    assert isinstance(judge, LLMJudge)
    assert judge.settings.base_url == "http://127.0.0.1:2/v1"
    with pytest.raises(ValueError, match="needs a judge model"):
        factory.make_llm_judge(None, tmp_path / "cache.sqlite", base_url="http://x")
    with pytest.raises(ValueError, match="no server given"):
        factory.make_llm_judge("judge-m", tmp_path / "cache.sqlite")
