"""lvlm-judge: Long-context VLM evaluation and judging."""

__version__ = "0.1.0"
