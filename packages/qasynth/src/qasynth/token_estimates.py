"""Token estimates of documents and samples without a tokenizer.

Images are exact: ``Document.page_tokens`` (mmprolong_schemas) reproduces the Qwen-VL
resize. Text is estimated: about 4 characters per token for Latin-script text (the usual
figure for the Qwen2 byte-level BPE on English prose), one token per CJK character, and a
fixed cost for the chat template's role markers. The text part of a long-document sample is
a few hundred tokens against 30K-130K image tokens, so a 20% error in it moves a sample by
well under 1%.
"""

from __future__ import annotations

import math
import re

from mmprolong_schemas import Message, TextPart

CHARS_PER_TOKEN = 4.0
"""Latin-script characters per token of the Qwen2 tokenizer, rounded."""

CHAT_TURN_TOKENS = 5
"""<|im_start|>role\\n ... <|im_end|>\\n around every turn."""

DEFAULT_SYSTEM_TOKENS = 20
"""The chat template's default system turn ("You are a helpful assistant.") with markers."""

_WIDE = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def text_tokens(text: str) -> int:
    """Estimated tokens of ``text``: CJK characters count one each, the rest 4 per token."""
    if not text:
        return 0
    wide = len(_WIDE.findall(text))
    return wide + math.ceil((len(text) - wide) / CHARS_PER_TOKEN)


def messages_text_tokens(messages: list[Message], target: str) -> int:
    """Text tokens of a chat (text parts, turn markers, default system turn) plus target."""
    total = DEFAULT_SYSTEM_TOKENS + CHAT_TURN_TOKENS + text_tokens(target)
    for message in messages:
        total += CHAT_TURN_TOKENS
        total += sum(text_tokens(p.text) for p in message.content if isinstance(p, TextPart))
    return total
