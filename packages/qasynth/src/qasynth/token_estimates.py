"""Token estimates of samples without a tokenizer.

Images are exact: ``Document.page_tokens`` (mmprolong_schemas) reproduces the Qwen-VL
resize. Text is estimated by ``mmprolong_schemas.vision_tokens.estimate_text_tokens``, with
a fixed cost for the chat template's role markers and default system turn.
"""

from __future__ import annotations

from mmprolong_schemas import Message, TextPart
from mmprolong_schemas.vision_tokens import (
    CHAT_TURN_TOKENS,
    SYSTEM_TURN_TOKENS,
    estimate_text_tokens,
)


def messages_text_tokens(messages: list[Message], target: str) -> int:
    """Text tokens of a chat (text parts, turn markers, default system turn) plus target."""
    total = SYSTEM_TURN_TOKENS + CHAT_TURN_TOKENS + estimate_text_tokens(target)
    for message in messages:
        total += CHAT_TURN_TOKENS
        total += sum(
            estimate_text_tokens(p.text) for p in message.content if isinstance(p, TextPart)
        )
    return total
