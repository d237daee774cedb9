"""Run a recipe as a chain of stages in one run directory, restartably.

Each stage owns ``RUN/<stage>/`` and a ``manifest.json`` (a RunManifest) there. A stage's
config hash covers its own slice of the recipe and the hash of the stage before it, so
changing one stage's settings changes the hash of that stage and of every later one. That is
all the bookkeeping needs:

- manifest done and hash unchanged          -> done: skipped
- manifest running/failed, hash unchanged   -> partial: run again, the stage resumes itself;
  so is a done stage that says it is ``outdated`` (eval, when only the judge changed)
- manifest with another hash                -> stale: its folder is cleared, then it runs;
  a folder holding checkpoints or predictions is cleared only with ``restart=True``;
  unless the manifest's recorded config, restated under today's hash rule by the stage
  (``restate``), has today's hash: the folder is adopted, its manifest rewritten
- no manifest                               -> pending: it runs

A stage too big for this machine (multi-node training) raises StageLaunched after writing
its launch files: the run stops there, the stage waits for the job that ``run_one`` runs on
every node, and the next ``run`` finds it done and carries on.

Stages are small objects (datatrove style): the orchestrator decides what to run, the stage
decides how, so a stage may launch worker processes (training) without the orchestrator
knowing. Nothing here imports a pipeline package; tests drive it with fake stages.
"""

from __future__ import annotations

import os
import shutil
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmprolong_runtime import RunManifest, config_hash, redact
from mmprolong_schemas import Recipe, SchemaError
from mmprolong_schemas.io import atomic_path

MANIFEST = "manifest.json"
RECIPE_FILE = "recipe.json"
LOCK_FILE = ".lock"

StageState = Literal["done", "partial", "stale", "pending"]


def precious_outputs(stage_dir: Path) -> list[str]:
    """What in a stage folder costs GPU time to make again: training checkpoints and model
    predictions (files named *predictions*)."""
    found = []
    checkpoints = stage_dir / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        found.append("checkpoints")
    predictions = sorted(p.name for p in stage_dir.rglob("*predictions*") if p.is_file())
    if predictions:
        found.append(f"{len(predictions)} prediction file(s)")
    return found


def failure_count(counts: dict[str, int]) -> int:
    """The failures a stage recorded in its counts: keys ``failures`` or ``*_failures`` (the
    eval stage's runner errors, judge failures and skipped records, per model) and
    ``*_failed_tasks`` (the suite stage's)."""
    return sum(
        value
        for key, value in counts.items()
        if key == "failures" or key.endswith(("_failures", "_failed_tasks"))
    )


def failures_note(counts: dict[str, int]) -> str:
    """ "3 failures", or "" for none: shown beside "done", so that a stage with failures is
    never shown as plainly done."""
    failures = failure_count(counts)
    return f"{failures} failure{'s' if failures != 1 else ''}" if failures else ""


def _clears(plan: StagePlan, from_stage: str | None) -> bool:
    """Whether running ``plan`` starts from an empty folder: a stale stage, or a done one
    that ``--from`` redoes."""
    return plan.state == "stale" or (plan.state == "done" and from_stage is not None)


class StageFailed(RuntimeError):
    """A stage raised; its manifest records the failure and a rerun resumes it."""

    def __init__(self, stage: str, cause: BaseException):
        self.stage = stage
        super().__init__(f"stage {stage!r} failed: {cause}")


class StageUnavailable(RuntimeError):
    """A stage cannot run here (a package API it needs is missing); says which and why."""


class StageLaunched(RuntimeError):
    """A stage handed its work to a job launched outside this process (its launch files are
    written); the run stops until that job has finished the stage."""

    def __init__(self, stage: str, message: str, files: Sequence[Path] = ()):
        self.stage = stage
        self.files = list(files)
        super().__init__(message)


AWAITING_LAUNCH = "awaiting_launch"
"""Manifest count of a stage whose launch files are written and whose job has not finished."""


@dataclass
class Execution:
    """Where the data stages' per-record steps run: in this machine's processes (``local``)
    or on a Ray cluster (``ray``: pool ingest, teacher calls, assembly, mixing and scoring go
    through the packages' Ray executor and actors). A run-time choice, not part of the
    recipe: both write the same records, so switching never invalidates a stage."""

    kind: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    _steps: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("local", "ray"):
            raise ValueError(f"the executor is local or ray, not {self.kind!r}")
        if self.ray_address is not None and self.kind != "ray":
            raise ValueError("a Ray address needs the ray executor")

    @property
    def on_ray(self) -> bool:
        return self.kind == "ray"

    def steps(self) -> Any:
        """The Executor for map steps on Ray (made once), or None: each package's default."""
        if not self.on_ray:
            return None
        if self._steps is None:
            from mmprolong_runtime.executor import make_executor

            self._steps = make_executor("ray", ray_address=self.ray_address)
        return self._steps


@dataclass
class StageContext:
    """What a stage gets when it runs: where to write and where its upstream stages wrote."""

    run_dir: Path
    recipe: Recipe
    name: str
    log: Callable[[str], None] = print
    execution: Execution = field(default_factory=Execution)

    @property
    def dir(self) -> Path:
        return self.run_dir / self.name

    def stage_dir(self, name: str) -> Path:
        """The folder of another stage of the same run (an upstream stage's output)."""
        return self.run_dir / name


class Stage(ABC):
    """One step of the pipeline. Subclasses set ``name`` and implement ``config`` and ``run``.

    ``run`` must be restartable: called again after a kill, it keeps what is already written
    (the packages write atomically and skip finished work) and finishes the rest."""

    name: str = ""

    @abstractmethod
    def config(self, recipe: Recipe) -> dict[str, Any]:
        """The part of the recipe this stage's output depends on (JSON-serialisable)."""

    @abstractmethod
    def run(self, ctx: StageContext) -> dict[str, int]:
        """Do the work into ``ctx.dir``; return counts for the manifest and ``status``."""

    def progress(self, ctx: StageContext) -> dict[str, int]:
        """Counts of what is on disk now, for a stage that has not finished."""
        return {}

    def restate(self, recorded: dict[str, Any]) -> dict[str, Any] | None:
        """A config that an earlier hash rule of this stage recorded in a manifest, restated
        under today's rule (None when it is not one): a folder whose restated config has
        today's hash was made for this recipe, and is kept."""
        return None

    def adopt(self, ctx: StageContext, manifest: RunManifest) -> None:
        """Bring a folder written under a legacy hash rule up to date (its old ``manifest``
        says what it was made with), before its manifest takes today's hash."""
        return None

    def outdated(self, ctx: StageContext) -> str:
        """Why this done stage must run again over its kept folder ("" when it need not): a
        setting left out of its hash changed how its outputs are read (eval: the judge)."""
        return ""


@dataclass
class StagePlan:
    name: str
    config_hash: str
    state: StageState
    reason: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    will_run: bool = False
    legacy: bool = False
    """Its folder's manifest holds an earlier hash rule's hash of this config (see
    Stage.restate): kept, and its manifest rewritten by the next run."""


def _stage_hash(name: str, config: dict[str, Any], upstream: str | None) -> str:
    """A stage's hash: its config chained with the hash of the stage before it."""
    return config_hash({"stage": name, "config": config, "upstream": upstream})


def _restated_hash(stage: Stage, manifest: RunManifest) -> str | None:
    """The hash of a manifest's recorded config restated under today's rule, if the stage
    recognises it as an earlier rule's."""
    recorded = manifest.config
    config = recorded.get("config")
    restated = stage.restate(config) if isinstance(config, dict) else None
    if restated is None:
        return None
    return _stage_hash(stage.name, restated, recorded.get("upstream"))


def read_manifest(stage_dir: Path) -> RunManifest | None:
    path = stage_dir / MANIFEST
    if not path.exists():
        return None
    try:
        return RunManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError:
        # A manifest we cannot read proves nothing about the folder: treat it as unfinished.
        return None


def write_manifest(stage_dir: Path, manifest: RunManifest) -> None:
    with atomic_path(stage_dir / MANIFEST) as tmp:
        tmp.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")


def save_recipe(run_dir: Path, recipe: Recipe) -> None:
    with atomic_path(run_dir / RECIPE_FILE) as tmp:
        tmp.write_text(recipe.model_dump_json(indent=2), encoding="utf-8")


def load_run_recipe(run_dir: Path) -> Recipe:
    path = run_dir / RECIPE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory: it has no {RECIPE_FILE}")
    try:
        return Recipe.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise SchemaError(str(path), [str(error)]) from None


class RunLock:
    """One pipeline at a time per run directory; a lock left by a dead process is taken over."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if _pid_alive(self.path):
                    raise RuntimeError(
                        f"{self.path.parent} is in use by another mmprolong process "
                        f"(pid {self.path.read_text().strip()}); wait for it or remove {self.path}"
                    ) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            return self
        raise RuntimeError(f"could not lock {self.path.parent}")

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _pid_alive(lock: Path) -> bool:
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Pipeline:
    """An ordered chain of stages over one run directory."""

    def __init__(self, stages: Sequence[Stage], run_dir: Path, execution: Execution | None = None):
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"stage names must be unique and non-empty: {names}")
        self.stages = list(stages)
        self.run_dir = Path(run_dir)
        self.execution = execution or Execution()

    @property
    def names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"unknown stage {name!r}; stages are {', '.join(self.names)}")
        return self.names.index(name)

    def context(
        self, recipe: Recipe, stage: Stage, log: Callable[[str], None] = print
    ) -> StageContext:
        return StageContext(
            run_dir=self.run_dir,
            recipe=recipe,
            name=stage.name,
            log=log,
            execution=self.execution,
        )

    def hashes(self, recipe: Recipe) -> list[str]:
        """Each stage's hash: its own config chained with the hash of the stage before."""
        hashes: list[str] = []
        upstream: str | None = None
        for stage in self.stages:
            upstream = _stage_hash(stage.name, stage.config(recipe), upstream)
            hashes.append(upstream)
        return hashes

    def plan(
        self, recipe: Recipe, *, from_stage: str | None = None, until: str | None = None
    ) -> list[StagePlan]:
        """The state of every stage and whether a run with these bounds would run it."""
        start = self.index(from_stage) if from_stage else 0
        stop = self.index(until) if until else len(self.stages) - 1
        if stop < start:
            raise ValueError(f"--until {until} comes before --from {from_stage}")
        plans: list[StagePlan] = []
        hashes = self.hashes(recipe)
        for position, (stage, expected) in enumerate(zip(self.stages, hashes, strict=True)):
            ctx = self.context(recipe, stage)
            manifest = read_manifest(ctx.dir)
            legacy = (
                manifest is not None
                and manifest.config_hash != expected
                and _restated_hash(stage, manifest) == expected
            )
            if manifest is None:
                plan = StagePlan(
                    stage.name, expected, "pending", "not started", stage.progress(ctx)
                )
            elif manifest.config_hash != expected and not legacy:
                upstream_changed = bool(plans) and plans[-1].state == "stale"
                reason = (
                    "an earlier stage's config changed"
                    if upstream_changed
                    else "its config changed"
                )
                plan = StagePlan(stage.name, expected, "stale", reason, manifest.counts)
            elif manifest.status == "done" and (rerun := stage.outdated(ctx)):
                plan = StagePlan(stage.name, expected, "partial", rerun, manifest.counts)
            elif manifest.status == "done":
                note = failures_note(manifest.counts) or (
                    "kept: made under an earlier hash rule" if legacy else ""
                )
                plan = StagePlan(stage.name, expected, "done", note, manifest.counts)
            else:
                reason = "failed" if manifest.status == "failed" else "interrupted"
                if manifest.counts.get(AWAITING_LAUNCH):
                    reason = "waiting for its launched job"
                plan = StagePlan(stage.name, expected, "partial", reason, stage.progress(ctx))
            plan.legacy = legacy
            forced = from_stage is not None and position >= start
            plan.will_run = start <= position <= stop and (plan.state != "done" or forced)
            plans.append(plan)
        return plans

    def check_bounds(self, plans: list[StagePlan], from_stage: str | None) -> None:
        """``--from`` reruns a stage on top of finished upstream stages; refuse otherwise."""
        if from_stage is None:
            return
        for plan in plans[: self.index(from_stage)]:
            if plan.state != "done":
                raise ValueError(
                    f"cannot start from {from_stage!r}: upstream stage {plan.name!r} is "
                    f"{plan.state}; run without --from first"
                )

    def run(
        self,
        recipe: Recipe,
        *,
        from_stage: str | None = None,
        until: str | None = None,
        command: list[str] | None = None,
        log: Callable[[str], None] = print,
        on_plan: Callable[[list[StagePlan]], None] | None = None,
        restart: bool = False,
    ) -> list[StagePlan]:
        """Run what the plan says, in order. ``on_plan`` sees the plan before anything changes
        on disk (the CLI prints it there: which stages are stale and will be redone). A stale
        stage whose folder holds checkpoints or predictions is refused unless ``restart``."""
        with RunLock(self.run_dir):
            plans = self.plan(recipe, from_stage=from_stage, until=until)
            self.check_bounds(plans, from_stage)
            if not restart:
                self.check_nothing_lost(recipe, plans, from_stage)
            self.adopt_legacy(recipe, plans)
            if on_plan is not None:
                on_plan(plans)
            save_recipe(self.run_dir, recipe)
            upstream: str | None = None
            for stage, plan in zip(self.stages, plans, strict=True):
                upstream, previous = plan.config_hash, upstream
                if not plan.will_run:
                    continue
                ctx = self.context(recipe, stage, log)
                if _clears(plan, from_stage):
                    shutil.rmtree(ctx.dir, ignore_errors=True)
                plan.counts = self._run_stage(stage, ctx, previous, plan.config_hash, command)
                plan.state = "done"
            return plans

    def adopt_legacy(self, recipe: Recipe, plans: list[StagePlan]) -> None:
        """Folders written under a legacy hash rule take today's hash (after the stage has
        read what it needs from their old manifest), so later runs see them as current."""
        upstream: str | None = None
        for stage, plan in zip(self.stages, plans, strict=True):
            old = read_manifest(self.context(recipe, stage).dir) if plan.legacy else None
            if old is not None:
                ctx = self.context(recipe, stage)
                stage.adopt(ctx, old)
                config = {"stage": stage.name, "config": stage.config(recipe), "upstream": upstream}
                current = {"config": redact(config), "config_hash": plan.config_hash}
                write_manifest(ctx.dir, old.model_copy(update=current))
                plan.legacy = False
            upstream = plan.config_hash

    def check_nothing_lost(
        self, recipe: Recipe, plans: list[StagePlan], from_stage: str | None = None
    ) -> None:
        """Refuse to clear checkpoints or predictions without ``restart``: a stale stage's, or
        a done one's that ``--from`` would redo."""
        for stage, plan in zip(self.stages, plans, strict=True):
            if not plan.will_run or not _clears(plan, from_stage):
                continue
            kept = precious_outputs(self.context(recipe, stage).dir)
            if not kept:
                continue
            if plan.state == "stale":
                raise ValueError(
                    f"stage {stage.name!r} is stale ({plan.reason}) and its folder holds "
                    f"{', '.join(kept)}: redoing it deletes them. Rerun with --restart to "
                    "do that, or restore the settings it was run with"
                )
            raise ValueError(
                f"--from {from_stage} redoes stage {stage.name!r}, whose folder holds "
                f"{', '.join(kept)}: redoing it deletes them. Rerun with --restart to do that"
            )

    def run_one(
        self,
        recipe: Recipe,
        name: str,
        *,
        command: list[str] | None = None,
        log: Callable[[str], None] = print,
        on_start: Callable[[bool], None] | None = None,
    ) -> dict[str, int] | None:
        """Run stage ``name`` alone on top of its finished upstream stages, as the rank 0 of a
        launched job does: stale output is cleared and the manifest written first. Returns
        None when the stage is already done. ``on_start(will_run)`` is called once the folder
        is ready and before the stage runs, so the job's other processes can wait for it."""
        with RunLock(self.run_dir):
            plans = self.plan(recipe)
            self.adopt_legacy(recipe, plans)
            position = self.index(name)
            for plan in plans[:position]:
                if plan.state != "done":
                    raise ValueError(
                        f"cannot run stage {name!r}: upstream stage {plan.name!r} is "
                        f"{plan.state}; run `mmprolong run` up to it first"
                    )
            plan = plans[position]
            if plan.state == "done":
                if on_start is not None:
                    on_start(False)
                return None
            stage = self.stages[position]
            ctx = self.context(recipe, stage, log)
            if plan.state == "stale":
                kept = precious_outputs(ctx.dir)
                if kept:
                    raise ValueError(
                        f"stage {name!r} is stale ({plan.reason}) and its folder holds "
                        f"{', '.join(kept)}; clear it with `mmprolong run --restart` first"
                    )
                shutil.rmtree(ctx.dir, ignore_errors=True)
            upstream = plans[position - 1].config_hash if position else None
            return self._run_stage(stage, ctx, upstream, plan.config_hash, command, on_start)

    def _run_stage(
        self,
        stage: Stage,
        ctx: StageContext,
        upstream: str | None,
        expected_hash: str,
        command: list[str] | None,
        on_start: Callable[[bool], None] | None = None,
    ) -> dict[str, int]:
        ctx.dir.mkdir(parents=True, exist_ok=True)
        manifest = RunManifest.start(
            f"mmprolong.{stage.name}",
            {"stage": stage.name, "config": stage.config(ctx.recipe), "upstream": upstream},
            command if command is not None else sys.argv,
        )
        # Both hashes are of the same redacted dict; a mismatch would make every rerun stale.
        assert manifest.config_hash == expected_hash, (manifest.config_hash, expected_hash)
        write_manifest(ctx.dir, manifest)
        if on_start is not None:
            on_start(True)
        try:
            counts = stage.run(ctx)
        except StageLaunched:
            # Still unfinished, but not interrupted: its job is to come.
            waiting = manifest.model_copy(update={"counts": {AWAITING_LAUNCH: 1}})
            write_manifest(ctx.dir, waiting)
            raise
        except BaseException as error:
            write_manifest(ctx.dir, manifest.finish("failed"))
            if isinstance(error, Exception):
                raise StageFailed(stage.name, error) from error
            raise
        write_manifest(ctx.dir, manifest.finish("done", **counts))
        return counts
