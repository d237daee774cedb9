"""Runner and judge construction shared by the CLI and the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lvlm_judge import factory
from lvlm_judge.context import ContextResolver
from lvlm_judge.judge.llm import LLMJudge
from lvlm_judge.runners import OpenAIRunner
from mmprolong_schemas import EvalItem, TextPart


def item(words: int, images: int) -> EvalItem:
    context: list[Any] = [TextPart(text="w " * words)]
    context += [{"type": "image", "path": f"p{i}.png"} for i in range(images)]
    return EvalItem(
        item_id=f"i{words}", dataset="d", length=8192, context=context, question="q?",
        answer="a", answer_format="String",
    )  # fmt: skip


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
