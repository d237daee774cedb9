"""longctx-rope: (m)RoPE extension of model configs and mRoPE position ids."""

__version__ = "0.1.0"
