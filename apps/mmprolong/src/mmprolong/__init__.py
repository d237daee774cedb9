"""mmprolong: The composed MMProLong pipeline and CLI."""

__version__ = "0.1.0"
