"""Build a model runner or an LLM judge from plain settings: one place for the CLI, the
``mmprolong`` app and Ray actors, so every entry point sizes engines and talks to judge
servers the same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lvlm_judge.context import ContextResolver
from lvlm_judge.judge.cache import JudgeCache
from lvlm_judge.judge.llm import LLMJudge
from lvlm_judge.judge.prompts import OUR_JUDGE
from lvlm_judge.prompting import OUR_TEMPLATES, PromptTemplates, build_prompt
from lvlm_judge.runners import OpenAIRunner, TransformersRunner, VLLMRunner
from lvlm_judge.runners.base import DEFAULT_MAX_NEW_TOKENS
from mmprolong_runtime.chat_client import ClientSettings
from mmprolong_runtime.vllm_engine import size_engine
from mmprolong_schemas import EvalItem

RUNNERS = ("transformers", "vllm", "openai")

VLLM_MARGIN_TOKENS = 64
"""Room above the longest prompt's estimate (which counts the chat template) when sizing."""


def text_token_counter(model_path: str | Path) -> Callable[[str], int]:
    """Count text tokens with the model's own tokenizer."""
    try:
        from transformers import AutoTokenizer
    except ImportError as error:
        raise ImportError(
            "counting text tokens needs transformers: pip install 'lvlm-judge[transformers]'"
        ) from error
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def make_runner(
    kind: str,
    model: str | Path,
    resolver: ContextResolver,
    items: Sequence[EvalItem] = (),
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    model_name: str | None = None,
    device_map: str = "auto",
    rope_spec: Any | None = None,
    base_url: str | None = None,
    concurrency: int = 8,
    log: Callable[[str], None] | None = None,
    templates: PromptTemplates = OUR_TEMPLATES,
    max_model_len: int | None = None,
) -> TransformersRunner | VLLMRunner | OpenAIRunner:
    """A runner of ``kind`` for ``model`` (a checkpoint path, or a served model's name for
    ``openai``). The vllm engine is sized from ``items`` prompted with ``templates``:
    max_model_len covers the longest prompt plus the answer (at most ``max_model_len``; a
    longer prompt fails its item), limit_mm_per_prompt the most images; ``rope_spec`` reaches
    it through hf_overrides."""
    if kind == "transformers":
        return TransformersRunner(
            model,
            resolver,
            max_new_tokens=max_new_tokens,
            device_map=device_map,
            model_name=model_name,
            rope_spec=rope_spec,
        )
    if kind == "openai":
        settings = ClientSettings.from_env(base_url, concurrency=concurrency)
        return OpenAIRunner(settings, str(model), resolver, max_new_tokens=max_new_tokens)
    if kind == "vllm":
        if not items:
            raise ValueError("sizing a vllm engine needs the evaluation items")
        from lvlm_judge.runners.transformers_runner import load_processor
        from lvlm_judge.runners.vllm_runner import engine_settings, estimate_prompt_tokens

        processor = load_processor(model)
        text_tokens = text_token_counter(model)
        estimates = {
            item.item_id: estimate_prompt_tokens(
                build_prompt(item, templates), processor, resolver, text_tokens
            )
            for item in items
        }
        images = [sum(1 for part in item.context if part.type != "text") for item in items]
        sizing = size_engine(
            list(estimates.values()), images, max_new_tokens, margin=VLLM_MARGIN_TOKENS,
            cap=max_model_len,
        )  # fmt: skip
        engine_args, env, warnings = engine_settings(model, sizing, resolver.spec, rope_spec)
        if log is not None:
            log(
                f"vllm: max_model_len {sizing.max_model_len}, "
                f"limit_mm_per_prompt {sizing.limit_mm_per_prompt}, "
                f"mm_processor_kwargs {engine_args['mm_processor_kwargs']}"
                + (", rope spec via hf_overrides" if "hf_overrides" in engine_args else "")
            )
            for warning in warnings:
                log(f"vllm: {warning}")
        return VLLMRunner(
            str(model), resolver, sizing, max_new_tokens=max_new_tokens, model_name=model_name,
            engine_args=engine_args, engine_env=env, estimates=estimates, processor=processor,
        )  # fmt: skip
    raise ValueError(f"unknown runner {kind!r}; expected one of {', '.join(RUNNERS)}")


def make_llm_judge(
    judge_model: str | None,
    cache_path: str | Path,
    *,
    base_url: str | None = None,
    concurrency: int = 8,
    pre_judge: bool = True,
    mmlb_source: str | Path | None = None,
) -> LLMJudge:
    """The LLM judge on an OpenAI-compatible server (``base_url`` or OPENAI_BASE_URL; the key
    from OPENAI_API_KEY), with its SQLite cache at ``cache_path``. With ``mmlb_source`` (an
    MMLongBench checkout) it asks MMLongBench v1.1's judge prompts with its request
    parameters, read from there; otherwise our own wording."""
    if not judge_model:
        raise ValueError("the LLM judge needs a judge model name")
    prompts = OUR_JUDGE
    if mmlb_source is not None:
        from lvlm_judge.mmlb_source import read_judge_prompts

        prompts = read_judge_prompts(mmlb_source)
    settings = ClientSettings.from_env(base_url, concurrency=concurrency)
    return LLMJudge(
        settings, judge_model, cache=JudgeCache(cache_path), pre_judge=pre_judge, prompts=prompts
    )
