"""Import a package API a stage needs, or fail with a message naming what is missing."""

from __future__ import annotations

import importlib
from typing import Any

from mmprolong.orchestrator import StageUnavailable


def require(stage: str, module: str, *names: str) -> list[Any]:
    """``names`` from ``module``; StageUnavailable says which stage needs which API."""
    try:
        loaded = importlib.import_module(module)
    except ImportError as error:
        raise StageUnavailable(
            f"stage {stage!r} needs the Python module {module!r}, which cannot be imported "
            f"({error}); install the package that provides it"
        ) from error
    missing = [name for name in names if not hasattr(loaded, name)]
    if missing:
        raise StageUnavailable(
            f"stage {stage!r} needs {', '.join(f'{module}.{name}' for name in missing)}, which "
            f"this version of {module.split('.')[0]} does not provide"
        )
    return [getattr(loaded, name) for name in names]
