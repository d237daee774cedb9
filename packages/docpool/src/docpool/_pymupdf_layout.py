"""Import pymupdf without its layout model; load that model only when it is asked for.

PyMuPDF 2.x imports ``pymupdf.layout`` at the end of its ``__init__`` (and again through
``pymupdf4llm``, which it also imports), each time as ``try: import ... except ImportError``,
and ``pymupdf.layout`` activates an ONNX network on import: about 0.5 s of CPU and 54 MB
in every process, used or not. The ``fast`` layout never uses it. Importing this module
(``docpool/__init__`` does so first) imports pymupdf with an import hook on
``sys.meta_path`` that refuses ``pymupdf.layout``, so pymupdf carries on as it does without
the package, and removes the hook once pymupdf is imported. Forked workers inherit the
lean process. ``load_layout_package`` imports the package for real when the ``model``
layout needs it. A process that imported pymupdf before docpool keeps what it loaded.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

LAYOUT_MODULE = "pymupdf.layout"


class _RefuseLayout:
    """A meta path finder that answers imports of ``pymupdf.layout`` with ImportError."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == LAYOUT_MODULE:
            raise ImportError(f"{LAYOUT_MODULE} is loaded only for docpool's model layout")
        return None


def _import_pymupdf_without_layout() -> None:
    if "pymupdf" in sys.modules:
        return
    hook = _RefuseLayout()
    sys.meta_path.insert(0, hook)
    try:
        import pymupdf  # noqa: F401
    finally:
        sys.meta_path.remove(hook)


_import_pymupdf_without_layout()


def load_layout_package() -> ModuleType:
    """``pymupdf.layout``, imported (its network activated) now if it was not; ImportError
    when the package is not installed."""
    import pymupdf

    module = importlib.import_module(LAYOUT_MODULE)
    pymupdf.layout = module
    helpers = sys.modules.get("pymupdf4llm")
    if helpers is not None and hasattr(helpers, "use_layout"):
        helpers.use_layout(True)  # it fell back to its non-layout helpers at import
    return module
