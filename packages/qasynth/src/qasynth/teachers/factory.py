"""One teacher from its backend name, as recipes and the CLI name them."""

from __future__ import annotations

from typing import Any

from mmprolong_schemas import VisionTokenSpec
from qasynth.teachers.base import Teacher
from qasynth.teachers.openai import OpenAITeacher
from qasynth.teachers.rules import RulesTeacher
from qasynth.teachers.transformers import TransformersTeacher
from qasynth.teachers.vllm import VLLMTeacher

BACKENDS = ("rules", "openai", "vllm", "transformers")


def make_teacher(
    kind: str,
    pool: Any,
    *,
    model: str | None = None,
    base_url: str | None = None,
    concurrency: int = 8,
    dpi: float = 144,
    spec: VisionTokenSpec | None = None,
    structured: bool = True,
    max_tokens: int = 1024,
    engine_kwargs: dict[str, Any] | None = None,
) -> Teacher:
    """``pool`` gives documents (``get``) to the rules teacher and page images (``render``)
    to the others. ``model`` is required except for rules; ``base_url`` for openai (else
    OPENAI_BASE_URL). ``spec`` (DPI, family factor, min/max pixels), when given, replaces
    ``dpi``. ``engine_kwargs`` go to the vllm engine (``vllm.LLM``/``EngineArgs`` options) and
    are refused for other backends."""
    if spec is not None:
        dpi = spec.dpi
    if kind == "rules":
        return RulesTeacher(pool.get)
    if kind not in BACKENDS:
        raise ValueError(f"unknown teacher {kind!r}; expected one of {', '.join(BACKENDS)}")
    if not model:
        raise ValueError(f"the {kind} teacher needs a model name or path")
    if engine_kwargs and kind != "vllm":
        raise ValueError(f"engine options are for the vllm teacher, not {kind}")
    if kind == "openai":
        return OpenAITeacher(
            model,
            base_url,
            pool,
            concurrency=concurrency,
            dpi=dpi,
            structured=structured,
            max_tokens=max_tokens,
        )
    if kind == "vllm":
        return VLLMTeacher(
            model,
            pool,
            spec=spec or VisionTokenSpec(dpi=dpi),
            structured=structured,
            max_tokens=max_tokens,
            engine_kwargs=engine_kwargs,
        )
    return TransformersTeacher.load(model, pool, dpi=dpi, max_new_tokens=max_tokens)
