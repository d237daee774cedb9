"""How MMProLong stages run: executors, run manifests and the CLI scaffolding they share.

``mmprolong_runtime.ray_executor`` (the ``ray`` extra) and ``mmprolong_runtime.chat_client``
(the ``http`` extra) are reached by module path, so importing this package needs neither.
"""

from mmprolong_runtime.executor import (
    Executor,
    LocalExecutor,
    TaskCrashed,
    TaskMemoryExceeded,
    TaskOutcome,
    TaskTimeout,
    make_executor,
)
from mmprolong_runtime.manifest import RunManifest, config_hash, redact

__version__ = "0.1.0"

__all__ = [
    "Executor",
    "LocalExecutor",
    "RunManifest",
    "TaskCrashed",
    "TaskMemoryExceeded",
    "TaskOutcome",
    "TaskTimeout",
    "config_hash",
    "make_executor",
    "redact",
]
