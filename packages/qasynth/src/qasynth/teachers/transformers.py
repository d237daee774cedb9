"""A local Hugging Face vision-language model as a teacher (CPU works with tiny models).

Greedy or sampled generation, one request at a time (long multi-image prompts do not batch
well without padding waste). torch and transformers are imported only when a model is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmprolong_schemas import PagePart
from qasynth.page_images import PageRenderer
from qasynth.teachers.base import ReplyCallback, Teacher, TeacherReply, TeacherRequest


class TransformersTeacher(Teacher):
    backend = "transformers"

    def __init__(
        self,
        model: Any,
        processor: Any,
        pages: PageRenderer,
        *,
        name: str | None = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        dpi: float = 144,
    ):
        super().__init__(
            name
            or getattr(getattr(model, "config", None), "_name_or_path", "")
            or type(model).__name__
        )
        self.hf_model = model
        self.processor = processor
        self.pages = pages
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.dpi = dpi

    def reply_settings(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "dpi": self.dpi,
        }

    @classmethod
    def load(cls, path: str, pages: PageRenderer, **kwargs: Any) -> TransformersTeacher:
        """Load a checkpoint directory or hub id with AutoModelForImageTextToText."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = AutoModelForImageTextToText.from_pretrained(path).eval()
        try:
            processor = AutoProcessor.from_pretrained(path)
        except ImportError:
            # Without torchvision the video half of Qwen processors cannot be built; the
            # image-only processors of longctx-rope cover that case when it is installed.
            from longctx_rope.processors import load_processor

            processor = load_processor(path)
        return cls(model, processor, pages, name=kwargs.pop("name", path), **kwargs)

    def hf_messages(self, request: TeacherRequest, images: Sequence[Any]) -> list[dict[str, Any]]:
        shown = iter(images)
        content: list[dict[str, Any]] = []
        for part in request.prompt.parts:
            if isinstance(part, PagePart):
                content.append({"type": "image", "image": next(shown)})
            else:
                content.append({"type": "text", "text": part.text})
        return [
            {"role": "system", "content": [{"type": "text", "text": request.prompt.system}]},
            {"role": "user", "content": content},
        ]

    def generate_one(self, request: TeacherRequest) -> TeacherReply:
        import torch

        pages = [p.page for p in request.prompt.page_parts]
        images = self.pages.render(request.segment.doc_id, pages, dpi=self.dpi)
        inputs = self.processor.apply_chat_template(
            self.hf_messages(request, images),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
        sample = self.temperature > 0
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(request.sampling_seed)
            output = self.hf_model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=sample,
                **({"temperature": self.temperature} if sample else {}),
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        text = self.processor.batch_decode([new_tokens], skip_special_tokens=True)[0]
        # As OpenAI-compatible servers say it: "length" when the limit, not an end-of-sequence
        # token, ended the reply (such a reply is never cached).
        eos = getattr(getattr(self.hf_model, "generation_config", None), "eos_token_id", None)
        ends = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        cut = new_tokens.shape[0] >= self.max_new_tokens and int(new_tokens[-1]) not in ends
        return TeacherReply(
            text=text,
            meta={
                "output_tokens": int(new_tokens.shape[0]),
                "finish_reason": "length" if cut else "stop",
            },
        )

    def complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None:
        for request in requests:
            try:
                reply = self.generate_one(request)
            except Exception as error:  # rendering or generation; the run goes on
                reply = TeacherReply(text=None, error=f"generation failed: {error}")
            on_reply(request, reply)
