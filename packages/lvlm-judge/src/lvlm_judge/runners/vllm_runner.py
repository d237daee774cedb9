"""vLLM's offline engine, sized to the data: max_model_len covers the longest prompt plus the
answer (or a cap), limit_mm_per_prompt the item with the most images
(``mmprolong_runtime.vllm_engine``, shared with qasynth's teacher). Needs the ``vllm`` extra;
the engine settings and request building are plain functions, tested against a contract fake
of vLLM's ``LLM`` (vllm/entrypoints/llm.py) without vLLM.

128K-512K: vLLM refuses a max_model_len above the checkpoint's derived maximum
(max_position_embeddings) unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 (vllm/config.py,
_get_and_verify_max_len). With a rope spec (an extended model) the engine gets the spec and a
raised max_position_embeddings through ``hf_overrides``; without one, the variable is set and
a warning says the model runs past its trained positions. ``mm_processor_kwargs`` carries the
min/max pixels, so the engine's image-token count is the one estimated here. A prompt whose
estimate does not fit fails its own item; one vLLM still refuses ("The decoder prompt (length
N) is longer than the maximum model length of M", vllm/v1/engine/processor.py) is retried
alone, so it too fails only its item."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lvlm_judge.context import ContextResolver
from lvlm_judge.prompting import Prompt
from lvlm_judge.runners.base import DEFAULT_MAX_NEW_TOKENS, GenerationRequest, chat_text
from mmprolong_runtime.vllm_engine import (
    EngineSizing,
    checkpoint_positions,
    long_context_env,
)
from mmprolong_schemas import Prediction, VisionTokenSpec
from mmprolong_schemas.vision_tokens import IMAGE_WRAPPER_TOKENS


def estimate_prompt_tokens(
    prompt: Prompt,
    processor: Any,
    resolver: ContextResolver,
    text_tokens: Callable[[str], int],
) -> int:
    """Tokens of the whole prompt: the chat-templated text (instruction, page labels,
    question, template markers and the prefill) plus each image's tokens. The template writes
    one start, pad and end marker per image; the processor expands the pad to the image's
    tokens, which ``resolver.tokens`` counts with the two markers."""
    text = text_tokens(chat_text(processor, prompt))
    placeholders = (IMAGE_WRAPPER_TOKENS + 1) * len(prompt.images)
    return text - placeholders + sum(resolver.tokens(part) for part in prompt.images)


def rope_overrides(model_dir: str | Path, rope_spec: Any, max_model_len: int) -> dict[str, Any]:
    """The ``hf_overrides`` that give vLLM a longctx-rope spec: the legacy fields vLLM reads
    (rope_theta, rope_scaling with mrope, max_position_embeddings raised to the engine's
    length), as longctx-rope writes them into an extended config."""
    from longctx_rope.architectures import text_config_dict
    from longctx_rope.extend import extended_config

    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    text = text_config_dict(extended_config(config, rope_spec, max_model_len))
    return {key: text[key] for key in ("rope_theta", "rope_scaling", "max_position_embeddings")}


def engine_settings(
    model_dir: str | Path,
    sizing: EngineSizing,
    spec: VisionTokenSpec,
    rope_spec: Any | None = None,
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(LLM keyword arguments, environment variables, warnings) of an engine for ``sizing``."""
    kwargs = sizing.engine_kwargs(spec)
    positions = checkpoint_positions(model_dir)
    if rope_spec is not None:
        kwargs["hf_overrides"] = rope_overrides(model_dir, rope_spec, sizing.max_model_len)
        positions = kwargs["hf_overrides"]["max_position_embeddings"]
    env, warnings = long_context_env(
        sizing.max_model_len, positions, hint="pass --rope-spec for an extended model"
    )
    return kwargs, env, warnings


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
    """``estimates`` (item id -> prompt tokens) lets a prompt that cannot fit fail at once."""

    def __init__(
        self,
        model_path: str | Path,
        resolver: ContextResolver,
        sizing: EngineSizing,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        model_name: str | None = None,
        engine_args: dict[str, Any] | None = None,
        engine_env: dict[str, str] | None = None,
        estimates: dict[str, int] | None = None,
        processor: Any | None = None,
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
        self.sizing = sizing
        self.estimates = estimates or {}
        self.processor = processor if processor is not None else load_processor(model_path)
        os.environ.update(engine_env or {})  # read by vLLM's envs when the engine is built
        arguments: dict[str, Any] = {
            "max_model_len": sizing.max_model_len,
            "limit_mm_per_prompt": sizing.limit_mm_per_prompt,
            **(engine_args or {}),
        }
        self.engine = LLM(model=str(model_path), **arguments)
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

    def _failed(self, request: GenerationRequest, error: str) -> Prediction:
        return Prediction(
            item_id=request.item_id,
            model=self.model_name,
            output="",
            prompt_format=request.prompt.prompt_format,
            error=error,
        )

    def _too_long(self, request: GenerationRequest) -> Prediction | None:
        estimate = self.estimates.get(request.item_id)
        room = self.sizing.max_model_len - self.max_new_tokens
        if estimate is not None and estimate > room:
            return self._failed(
                request,
                f"PromptTooLong: about {estimate} prompt tokens, more than the "
                f"{room} max_model_len {self.sizing.max_model_len} leaves for the prompt",
            )
        return None

    def _run(self, chunk: Sequence[GenerationRequest]) -> list[Prediction]:
        started = time.perf_counter()
        entries = [
            vllm_request(r, lambda p: chat_text(self.processor, p), self.resolver) for r in chunk
        ]
        outputs = self.engine.generate(entries, self.sampling, use_tqdm=False)
        elapsed = (time.perf_counter() - started) / len(chunk)
        predictions = []
        for request, output in zip(chunk, outputs, strict=True):
            completion = output.outputs[0]
            predictions.append(
                Prediction(
                    item_id=request.item_id,
                    model=self.model_name,
                    output=completion.text,
                    prompt_format=request.prompt.prompt_format,
                    input_tokens=len(output.prompt_token_ids or []),
                    output_tokens=len(completion.token_ids),
                    latency_s=elapsed,
                )
            )
        return predictions

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Prediction]:
        """Batches of requests; a prompt that does not fit, a missing image or an engine error
        (a prompt vLLM refuses, out of memory) fails its own item, the others go on."""
        for start in range(0, len(requests), self.batch):
            chunk = []
            for request in requests[start : start + self.batch]:
                refused = self._too_long(request)
                if refused is not None:
                    yield refused
                else:
                    chunk.append(request)
            if not chunk:
                continue
            try:
                yield from self._run(chunk)
            except (ValueError, RuntimeError, OSError):
                for request in chunk:  # find the item(s) at fault: each alone
                    try:
                        yield from self._run([request])
                    except (ValueError, RuntimeError, OSError) as error:
                        yield self._failed(request, f"{type(error).__name__}: {error}")
