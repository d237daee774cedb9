"""Stage report: gather every stage's results and write the Markdown report with figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmprolong.orchestrator import Stage, StageContext, StageUnavailable, read_manifest
from mmprolong.paper import rows_for
from mmprolong.report import REPORT_FILE, ReportData, write_report
from mmprolong.sweeps import SWEEPS
from mmprolong_schemas import Recipe

REPORT_DIR = "report"


class Contributor(Stage):
    """A stage that can put its results into the report."""

    def contribute(self, ctx: StageContext, data: ReportData) -> None:
        """Fill the parts of ``data`` this stage's outputs answer."""


def sweep_row(recipe: Recipe) -> tuple[str, str] | None:
    """The paper row a sweep run reproduces, recognised by the run's recipe name."""
    for sweep in SWEEPS.values():
        for run in sweep.runs:
            if recipe.name == f"{sweep.name}-{run.name}":
                return run.paper_row
    return None


class ReportStage(Stage):
    name = REPORT_DIR

    def __init__(self, upstream: Sequence[Stage]):
        self.upstream = list(upstream)

    def config(self, recipe: Recipe) -> dict[str, Any]:
        # The report shows the whole recipe; its hash already chains every upstream stage.
        return {"recipe": recipe.name}

    def run(self, ctx: StageContext) -> dict[str, int]:
        data = ReportData(recipe=ctx.recipe, run_dir=ctx.run_dir)
        for stage in self.upstream:
            stage_ctx = StageContext(ctx.run_dir, ctx.recipe, stage.name, ctx.log)
            manifest = read_manifest(stage_ctx.dir)
            if manifest is not None:
                data.manifests[stage.name] = manifest
            if isinstance(stage, Contributor):
                try:
                    stage.contribute(stage_ctx, data)
                except StageUnavailable as error:
                    # A missing reader costs its section, not the whole report.
                    data.notes.append(str(error))
        data.paper_rows = rows_for(ctx.recipe, sweep_row(ctx.recipe))
        path = write_report(data, ctx.dir)
        ctx.log(f"report: {path}")
        return {
            "figures": len(list(ctx.dir.glob("*.png"))),
            "sections": _sections(path.read_text()),
        }

    def progress(self, ctx: StageContext) -> dict[str, int]:
        return {"written": int((ctx.dir / REPORT_FILE).exists())}

    def outdated(self, ctx: StageContext) -> str:
        # An upstream stage that reruns over its kept folder (eval after a judge change)
        # keeps its hash, so the report's hash cannot tell: compare with what they say.
        own = read_manifest(ctx.dir)
        for stage in self.upstream:
            stage_ctx = StageContext(ctx.run_dir, ctx.recipe, stage.name, ctx.log)
            manifest = read_manifest(stage_ctx.dir)
            ran_since = (
                own is not None
                and manifest is not None
                and manifest.finished_at is not None
                and manifest.finished_at > own.started_at
            )
            if ran_since or (manifest is not None and stage.outdated(stage_ctx)):
                return f"stage {stage.name!r} reruns or reran over its kept outputs"
        return ""


def _sections(markdown: str) -> int:
    return sum(line.startswith("## ") for line in markdown.splitlines())
