"""What every runner takes and gives. All runners decode greedily; the prompt's prefill
("Answer:") starts the model's reply and is not part of the recorded output."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lvlm_judge.prompting import Prompt
from mmprolong_schemas import Prediction

DEFAULT_MAX_NEW_TOKENS = 128


@dataclass(frozen=True)
class GenerationRequest:
    item_id: str
    prompt: Prompt


class Runner(Protocol):
    model_name: str
    max_new_tokens: int

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Prediction]:
        """One Prediction per request, yielded as soon as it is done (errors recorded in
        Prediction.error, never raised for a single item)."""
        ...


def chat_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The prompt as one user message with {"type": "image"} places, for chat templates."""
    content: list[dict[str, Any]] = []
    for segment in prompt.segments:
        if isinstance(segment, str):
            content.append({"type": "text", "text": segment})
        else:
            content.append({"type": "image"})
    return [{"role": "user", "content": content}]


def chat_text(processor: Any, prompt: Prompt) -> str:
    """The templated prompt text with the generation prompt and the prefill appended."""
    text: str = processor.apply_chat_template(
        chat_messages(prompt), tokenize=False, add_generation_prompt=True
    )
    return text + prompt.prefill
