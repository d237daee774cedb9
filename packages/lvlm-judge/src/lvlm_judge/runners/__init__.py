"""Model runners with one interface: ``generate(requests) -> Iterator[Prediction]``."""

from lvlm_judge.runners.base import GenerationRequest, Runner, chat_messages
from lvlm_judge.runners.openai_runner import OpenAIRunner
from lvlm_judge.runners.transformers_runner import TransformersRunner
from lvlm_judge.runners.vllm_runner import VLLMRunner

__all__ = [
    "GenerationRequest",
    "OpenAIRunner",
    "Runner",
    "TransformersRunner",
    "VLLMRunner",
    "chat_messages",
]
