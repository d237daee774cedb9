"""A local model through transformers: accelerate's device_map places it (CPU for tiny test
models, several GPUs for a 7B at 128K). Greedy, one item at a time (long contexts leave no
room for batches). Rope settings come from the checkpoint's config (an extended checkpoint
written by longctx-rope carries them) or from a longctx-rope spec applied after loading."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lvlm_judge.context import ContextResolver
from lvlm_judge.runners.base import DEFAULT_MAX_NEW_TOKENS, GenerationRequest, chat_text
from mmprolong_schemas import Prediction


def read_rope_spec(path: str | Path) -> Any:
    """A longctx-rope RopeSpec from its JSON form (what ``longctx-rope`` writes)."""
    from pydantic import TypeAdapter

    from longctx_rope import RopeSpec

    return TypeAdapter(RopeSpec).validate_json(Path(path).read_text(encoding="utf-8"))


def load_processor(model_path: str | Path) -> Any:
    """The checkpoint's processor; longctx-rope's loader also works without torchvision."""
    try:
        from longctx_rope import load_processor as load_without_torchvision
    except ImportError:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(model_path)
    return load_without_torchvision(model_path)


class TransformersRunner:
    def __init__(
        self,
        model_path: str | Path,
        resolver: ContextResolver,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        device_map: str | dict[str, Any] = "auto",
        dtype: str = "auto",
        model_name: str | None = None,
        rope_spec: Any | None = None,
    ):
        try:
            from transformers import AutoModelForImageTextToText
        except ImportError as error:
            raise ImportError(
                "the transformers runner needs: pip install 'lvlm-judge[transformers]'"
            ) from error
        self.model_name = model_name or str(model_path)
        self.max_new_tokens = max_new_tokens
        self.resolver = resolver
        self.processor = load_processor(model_path)
        self.model = AutoModelForImageTextToText.from_pretrained(
            model_path, device_map=device_map, dtype=dtype
        ).eval()
        if rope_spec is not None:
            from longctx_rope import apply_rope

            apply_rope(self.model, rope_spec)

    def _generate_one(self, request: GenerationRequest) -> Prediction:
        import torch

        images = [self.resolver.load(part) for part in request.prompt.images]
        inputs = self.processor(
            text=[chat_text(self.processor, request.prompt)],
            images=images or None,
            return_tensors="pt",
        ).to(self.model.device)
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False
            )
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = output[0, prompt_length:]
        text = self.processor.batch_decode([new_tokens], skip_special_tokens=True)[0]
        return Prediction(
            item_id=request.item_id,
            model=self.model_name,
            output=text,
            prompt_format=request.prompt.prompt_format,
            input_tokens=int(prompt_length),
            output_tokens=int(new_tokens.shape[0]),
            latency_s=time.perf_counter() - started,
        )

    def answer_nll(self, request: GenerationRequest, answer: str) -> tuple[float, int]:
        """(summed negative log-likelihood in nats, answer tokens) of ``answer`` written after
        the prompt and its prefill, teacher-forced: one forward pass, the model's own loss
        over the answer's tokens (transformers shifts the labels)."""
        import torch

        images = [self.resolver.load(part) for part in request.prompt.images]
        target = " " + answer.strip()
        answer_tokens = len(self.processor.tokenizer(target, add_special_tokens=False)["input_ids"])
        if answer_tokens == 0:
            raise ValueError(f"{request.item_id}: the answer has no tokens")
        inputs = self.processor(
            text=[chat_text(self.processor, request.prompt) + target],
            images=images or None,
            return_tensors="pt",
        ).to(self.model.device)
        labels = inputs["input_ids"].clone()
        labels[:, :-answer_tokens] = -100
        with torch.inference_mode():
            loss = self.model(**inputs, labels=labels, use_cache=False).loss
        return float(loss) * answer_tokens, answer_tokens

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Prediction]:
        for request in requests:
            try:
                yield self._generate_one(request)
            except (RuntimeError, ValueError, OSError) as error:
                yield Prediction(
                    item_id=request.item_id,
                    model=self.model_name,
                    output="",
                    prompt_format=request.prompt.prompt_format,
                    error=f"{type(error).__name__}: {error}",
                )
