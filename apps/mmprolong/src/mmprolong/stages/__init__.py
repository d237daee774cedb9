"""The pipeline's stages, in order: pool -> synth -> mix -> rope -> train -> eval -> report.

Each stage is a small object that calls one package; the orchestrator chains them.
"""

from __future__ import annotations

from mmprolong.orchestrator import Stage
from mmprolong.stages.evaluate import EvalStage
from mmprolong.stages.mix import MixStage
from mmprolong.stages.pool import PoolStage
from mmprolong.stages.report import ReportStage
from mmprolong.stages.rope import RopeStage
from mmprolong.stages.synth import SynthStage
from mmprolong.stages.train import TrainStage

STAGE_NAMES = ("pool", "synth", "mix", "rope", "train", "eval", "report")


def default_stages() -> list[Stage]:
    upstream: list[Stage] = [
        PoolStage(),
        SynthStage(),
        MixStage(),
        RopeStage(),
        TrainStage(),
        EvalStage(),
    ]
    return [*upstream, ReportStage(upstream)]


__all__ = [
    "STAGE_NAMES",
    "EvalStage",
    "MixStage",
    "PoolStage",
    "ReportStage",
    "RopeStage",
    "SynthStage",
    "TrainStage",
    "default_stages",
]
