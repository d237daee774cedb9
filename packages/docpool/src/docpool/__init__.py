"""docpool: PDFs to a document pool."""

__version__ = "0.1.0"
