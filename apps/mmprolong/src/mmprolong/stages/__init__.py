"""The pipeline's stages, in order: pool -> synth -> mix -> rope -> train [-> sft] -> eval ->
report. The sft stage exists only in a recipe with ``train.extra_sft``.

Each stage is a small object that calls one package; the orchestrator chains them.
"""

from __future__ import annotations

from mmprolong.orchestrator import Stage
from mmprolong.stages.evaluate import EvalStage
from mmprolong.stages.mix import MixStage
from mmprolong.stages.pool import PoolStage
from mmprolong.stages.report import ReportStage
from mmprolong.stages.rope import RopeStage
from mmprolong.stages.sft import SftStage
from mmprolong.stages.suite import SuiteStage
from mmprolong.stages.synth import SynthStage
from mmprolong.stages.train import TrainStage
from mmprolong_schemas import Recipe

STAGE_NAMES = ("pool", "synth", "mix", "rope", "train", "eval", "report")
"""The stages of a recipe without the SFT stage."""
SFT_STAGE_NAMES = ("pool", "synth", "mix", "rope", "train", "sft", "eval", "report")


def default_stages(recipe: Recipe | None = None) -> list[Stage]:
    """The stages ``recipe`` runs (without a recipe: those of a recipe without SFT)."""
    upstream: list[Stage] = [PoolStage(), SynthStage(), MixStage(), RopeStage(), TrainStage()]
    if recipe is not None and recipe.sft_stage is not None:
        upstream.append(SftStage())
    upstream.append(EvalStage())
    if recipe is not None and recipe.eval.suite:
        upstream.append(SuiteStage())  # the recipe's generalization groups, after eval
    return [*upstream, ReportStage(upstream)]


__all__ = [
    "SFT_STAGE_NAMES",
    "STAGE_NAMES",
    "EvalStage",
    "MixStage",
    "PoolStage",
    "ReportStage",
    "RopeStage",
    "SftStage",
    "SuiteStage",
    "SynthStage",
    "TrainStage",
    "default_stages",
]
