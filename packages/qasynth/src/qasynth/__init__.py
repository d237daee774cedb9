"""qasynth: Document pool to long-context training samples."""

__version__ = "0.1.0"
