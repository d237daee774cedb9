"""seqpar-train: LongPT trainer: Ulysses SP + FSDP2 + varlen attention."""

__version__ = "0.1.0"
