"""mmprolong: the MMProLong pipeline, driven by one recipe file.

    from mmprolong import Pipeline, default_stages, load_recipe
    recipe = load_recipe("demo-tiny")
    pipeline = Pipeline(default_stages(recipe), Path("runs/demo"))
    pipeline.run(recipe)

A multi-node training stage raises StageLaunched after ``write_launch_files``; every process
of the job then runs ``join_stage(run_dir, "train")``.

``default_stages`` is imported on first use, so ``import mmprolong`` stays light. The command
line is ``mmprolong.cli:app``; stage plans, sweep tables and recipe writing are reached by
module path (``mmprolong.orchestrator``, ``mmprolong.sweeps``, ``mmprolong.recipes``).
"""

from typing import Any

from mmprolong.launch import join_stage, write_launch_files
from mmprolong.orchestrator import Pipeline, Stage, StageContext, StageFailed, StageLaunched
from mmprolong.recipes import apply_overrides, load_recipe, shipped_recipes
from mmprolong.sweeps import get_sweep, write_sweep

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "default_stages":
        from mmprolong.stages import default_stages

        return default_stages
    raise AttributeError(f"module 'mmprolong' has no attribute {name!r}")


__all__ = [
    "Pipeline",
    "Stage",
    "StageContext",
    "StageFailed",
    "StageLaunched",
    "__version__",
    "apply_overrides",
    "default_stages",
    "get_sweep",
    "join_stage",
    "load_recipe",
    "shipped_recipes",
    "write_launch_files",
    "write_sweep",
]
