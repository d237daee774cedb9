"""The v1.1 LLM judge: prompts, reply parsing, cache, and the judging loop."""
