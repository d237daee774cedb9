"""How big a vLLM offline engine is made, for every stage that runs one (qasynth's teacher,
lvlm-judge's runner): ``max_model_len`` holds the longest prompt plus the reply (and a margin
where prompt lengths are estimates), rounded up; ``limit_mm_per_prompt`` the most images of
any prompt; ``mm_processor_kwargs`` the vision spec's pixel bounds, so the engine counts image
tokens as the estimate did.

Past a checkpoint's trained positions vLLM refuses a ``max_model_len`` above
``max_position_embeddings`` unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 (vllm/config.py,
``_get_and_verify_max_len``); ``long_context_env`` says when that is needed. Keyword names are
``vllm.EngineArgs`` fields (``LLM(model, **kwargs)`` builds ``EngineArgs(**kwargs)``,
vllm/entrypoints/llm.py). Plain arithmetic: vLLM is not imported here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmprolong_schemas import VisionTokenSpec

LENGTH_ROUNDING = 1024
"""max_model_len is rounded up to a multiple of this."""

LONG_MAX_MODEL_LEN_ENV = "VLLM_ALLOW_LONG_MAX_MODEL_LEN"


@dataclass(frozen=True)
class EngineSizing:
    """An engine's limits: tokens per sequence (prompt and reply) and images per prompt."""

    max_model_len: int
    images: int

    @property
    def limit_mm_per_prompt(self) -> dict[str, int]:
        return {"image": self.images}

    def engine_kwargs(self, spec: VisionTokenSpec) -> dict[str, Any]:
        """The ``vllm.LLM`` keyword arguments of these limits and ``spec``'s pixel bounds."""
        return {
            "max_model_len": self.max_model_len,
            "limit_mm_per_prompt": self.limit_mm_per_prompt,
            "mm_processor_kwargs": {"min_pixels": spec.min_pixels, "max_pixels": spec.max_pixels},
        }

    def overridden(self, engine_kwargs: Mapping[str, Any]) -> EngineSizing:
        """These limits with what the user's engine options set explicitly."""
        limit = engine_kwargs.get("limit_mm_per_prompt")
        images = limit.get("image") if isinstance(limit, dict) else None
        return EngineSizing(
            int(engine_kwargs.get("max_model_len") or self.max_model_len),
            int(images) if images is not None else self.images,
        )

    def covering(self, other: EngineSizing) -> EngineSizing:
        """Limits that fit what both fit (an engine grows for a later job, never shrinks)."""
        return EngineSizing(
            max(self.max_model_len, other.max_model_len), max(self.images, other.images)
        )


def size_engine(
    prompt_tokens: Sequence[int],
    images_per_prompt: Sequence[int],
    reply_tokens: int,
    *,
    margin: int = 0,
    cap: int | None = None,
) -> EngineSizing:
    """The smallest engine that fits every prompt: the longest prompt, the reply and
    ``margin``, rounded up to LENGTH_ROUNDING and at most ``cap`` (a longer prompt fails its
    own request); at least one image per prompt, as a limit of 0 turns images off."""
    if not prompt_tokens:
        raise ValueError("sizing an engine needs at least one request")
    needed = max(prompt_tokens) + reply_tokens + margin
    rounded = math.ceil(needed / LENGTH_ROUNDING) * LENGTH_ROUNDING
    return EngineSizing(
        max_model_len=min(rounded, cap) if cap else rounded,
        images=max(1, max(images_per_prompt, default=0)),
    )


def checkpoint_positions(model_dir: str | Path) -> int | None:
    """max_position_embeddings of a checkpoint's config.json (text config first); None when
    the folder has no config.json (a hub name)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    text = config.get("text_config") or {}
    value = text.get("max_position_embeddings", config.get("max_position_embeddings"))
    return int(value) if value is not None else None


def long_context_env(
    max_model_len: int, positions: int | None, hint: str = ""
) -> tuple[dict[str, str], list[str]]:
    """(environment variables, warnings) for an engine of ``max_model_len`` on a model of
    ``positions`` positions: past them vLLM needs the variable, and the model runs where it
    was not trained, which the warning says (``hint``: how to give an extended model)."""
    if positions is None or max_model_len <= positions:
        return {}, []
    warning = (
        f"max_model_len {max_model_len} is above the checkpoint's max_position_embeddings "
        f"{positions}: {LONG_MAX_MODEL_LEN_ENV}=1 is set, and the model runs past the "
        "positions it was made for"
    )
    return {LONG_MAX_MODEL_LEN_ENV: "1"}, [f"{warning} ({hint})" if hint else warning]
