"""mmprolong: the MMProLong pipeline, driven by one recipe file.

    from mmprolong import Pipeline, default_stages, load_recipe
    pipeline = Pipeline(default_stages(), Path("runs/demo"))
    pipeline.run(load_recipe("demo-tiny"))

``default_stages`` is imported on first use, so ``import mmprolong`` stays light.
"""

from typing import Any

from mmprolong.orchestrator import (
    Pipeline,
    Stage,
    StageContext,
    StageFailed,
    StagePlan,
    StageUnavailable,
    load_run_recipe,
)
from mmprolong.recipes import apply_overrides, load_recipe, recipe_to_toml, shipped_recipes
from mmprolong.sweeps import SWEEPS, Sweep, SweepRun, get_sweep, write_sweep

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "default_stages":
        from mmprolong.stages import default_stages

        return default_stages
    raise AttributeError(f"module 'mmprolong' has no attribute {name!r}")


__all__ = [
    "SWEEPS",
    "Pipeline",
    "Stage",
    "StageContext",
    "StageFailed",
    "StagePlan",
    "StageUnavailable",
    "Sweep",
    "SweepRun",
    "__version__",
    "apply_overrides",
    "default_stages",
    "get_sweep",
    "load_recipe",
    "load_run_recipe",
    "recipe_to_toml",
    "shipped_recipes",
    "write_sweep",
]
