"""vLLM's offline engine, sized to the data: max_model_len covers the longest prompt plus the
answer, limit_mm_per_prompt the item with the most images. Needs the ``vllm`` extra; the sizing
and request building are plain functions, tested without vLLM."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvlm_judge.context import ContextResolver
from lvlm_judge.runners.base import DEFAULT_MAX_NEW_TOKENS, GenerationRequest, chat_text
from mmprolong_schemas import Prediction

SIZE_STEP = 1024
"""max_model_len is rounded up to a multiple of this."""


@dataclass(frozen=True)
class EngineSizing:
    max_model_len: int
    limit_mm_per_prompt: dict[str, int]


def size_engine(
    prompt_tokens: Sequence[int],
    images_per_prompt: Sequence[int],
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    margin: int = 64,
) -> EngineSizing:
    """The smallest engine that fits every request: room for the longest prompt, the answer
    and a margin for chat-template tokens, rounded up to SIZE_STEP."""
    if not prompt_tokens:
        raise ValueError("sizing an engine needs at least one request")
    needed = max(prompt_tokens) + max_new_tokens + margin
    return EngineSizing(
        max_model_len=math.ceil(needed / SIZE_STEP) * SIZE_STEP,
        limit_mm_per_prompt={"image": max(1, max(images_per_prompt, default=0))},
    )


def vllm_request(
    request: GenerationRequest, template: Callable[[Any], str], resolver: ContextResolver
) -> dict[str, Any]:
    """One prompt in vLLM's offline form: templated text plus the images in order."""
    images = [resolver.load(part) for part in request.prompt.images]
    entry: dict[str, Any] = {"prompt": template(request.prompt)}
    if images:
        entry["multi_modal_data"] = {"image": images}
    return entry


class VLLMRunner:
    def __init__(
        self,
        model_path: str | Path,
        resolver: ContextResolver,
        sizing: EngineSizing,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        model_name: str | None = None,
        engine_args: dict[str, Any] | None = None,
        batch: int = 16,
    ):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as error:
            raise ImportError("the vllm runner needs: pip install 'lvlm-judge[vllm]'") from error
        from lvlm_judge.runners.transformers_runner import load_processor

        self.model_name = model_name or str(model_path)
        self.max_new_tokens = max_new_tokens
        self.resolver = resolver
        self.batch = max(1, batch)
        self.processor = load_processor(model_path)
        self.engine = LLM(
            model=str(model_path),
            max_model_len=sizing.max_model_len,
            limit_mm_per_prompt=sizing.limit_mm_per_prompt,
            **(engine_args or {}),
        )
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)

    def close(self) -> None:
        """Release the engine and its GPU memory, so the next model can be loaded."""
        import gc

        del self.engine
        gc.collect()
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Prediction]:
        for start in range(0, len(requests), self.batch):
            chunk = requests[start : start + self.batch]
            started = time.perf_counter()
            entries = [
                vllm_request(r, lambda p: chat_text(self.processor, p), self.resolver)
                for r in chunk
            ]
            outputs = self.engine.generate(entries, self.sampling, use_tqdm=False)
            elapsed = (time.perf_counter() - started) / len(chunk)
            for request, output in zip(chunk, outputs, strict=True):
                completion = output.outputs[0]
                yield Prediction(
                    item_id=request.item_id,
                    model=self.model_name,
                    output=completion.text,
                    prompt_format=request.prompt.prompt_format,
                    input_tokens=len(output.prompt_token_ids or []),
                    output_tokens=len(completion.token_ids),
                    latency_s=elapsed,
                )
