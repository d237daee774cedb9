"""Stage sft: the short-context SFT that follows LongPT in the paper's OCR ablations.

Only in a recipe with ``train.extra_sft``. The short data (LLaVA-OneVision-style files of
``sft.data``, else ``synth.short_data``; a demo recipe without any generates a small set) is
read with qasynth, filled in seeded order up to ``sft.token_budget`` tokens and written as a
mixture shard; seqpar-train then continues from the LongPT export (``train/hf``) with a fresh
optimizer and schedule, the same rope and the same parallel layout, and the result is
exported to ``sft/hf``, which evaluation then scores as the trained model.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mmprolong.demo_data import write_demo_short_data
from mmprolong.orchestrator import StageContext
from mmprolong.report import ReportData
from mmprolong.stages._require import require
from mmprolong.stages._training import (
    HF_DIR,
    checkpoint_progress,
    logged_losses,
    on_rank_zero,
    train_and_export,
)
from mmprolong.stages.pool import pool_path
from mmprolong.stages.report import Contributor
from mmprolong.stages.train import image_root, render_workers, trained_checkpoint
from mmprolong_runtime import config_hash
from mmprolong_runtime.finished import finish, read_finished
from mmprolong_schemas import ImagePart, Recipe, Sample, write_parquet
from mmprolong_schemas.recipe import SftConfig

DATA_DIR = "data"
SUMMARY = "summary.json"
GENERATED = "generated"
SHARD_SAMPLES = 50_000
DEMO_RECORDS = 96


def sft_checkpoint(ctx: StageContext) -> Path:
    return ctx.stage_dir(SftStage.name) / HF_DIR


def _settings(recipe: Recipe) -> SftConfig:
    settings = recipe.sft_stage
    if settings is None:
        raise ValueError(f"recipe {recipe.name!r} has no SFT stage (train.extra_sft is false)")
    return settings


def _inputs(ctx: StageContext, settings: SftConfig) -> list[Path]:
    files = settings.data or ctx.recipe.synth.short_data
    if files:
        return [Path(name) for name in files]
    if ctx.recipe.demo is None:
        raise ValueError(
            "the SFT stage has no short data: set sft.data (or synth.short_data) to "
            "LLaVA-OneVision-style JSON, JSONL or Parquet files"
        )
    generated = ctx.dir / GENERATED / "short.json"
    write_demo_short_data(generated, DEMO_RECORDS, seed=settings.seed)
    return [generated]


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:24]


def _image_root(path: Path, data_dir: Path) -> Path:
    # As qasynth does: Parquet images are extracted, JSON images sit beside the JSON file.
    return data_dir / "images" if path.suffix == ".parquet" else path.parent


def select_budget(tokens: list[int], budget: int, seed: int, repeat: bool) -> list[int]:
    """Indices of samples in a seeded order until their tokens reach ``budget``. Short of
    it, a demo repeats the data in fresh orders (epochs); a real run keeps what there is."""
    if not tokens:
        return []
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    total = 0
    while total < budget:
        for index in rng.permutation(len(tokens)):
            chosen.append(int(index))
            total += tokens[int(index)]
            if total >= budget:
                break
        if not repeat:
            break
    return chosen


def build_sft_data(ctx: StageContext, settings: SftConfig) -> dict[str, Any]:
    """Write the SFT shards into ``sft/data`` (reused when their inputs are unchanged);
    returns the summary: samples, tokens, skipped reasons and the image root if any."""
    (load_short_samples,) = require(ctx.name, "qasynth", "load_short_samples")
    recipe = ctx.recipe
    data_dir = ctx.dir / DATA_DIR
    inputs = _inputs(ctx, settings)
    length, _ = settings.rows(recipe.train)
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"short-data file {path} does not exist")
    key = config_hash(
        {
            "inputs": [(str(path), _digest(path)) for path in inputs],
            "budget": settings.token_budget,
            "seed": settings.seed,
            "max_length": length,
            "vision": recipe.vision.model_dump(mode="json"),
        }
    )
    summary_path = data_dir / SUMMARY
    previous = read_finished(summary_path, key, old_outputs=lambda old: old["shards"])
    if previous:
        return previous
    skipped: Counter[str] = Counter()
    samples: list[Sample] = []
    roots: set[Path] = set()
    for path in inputs:
        root = _image_root(path, data_dir)
        for sample in load_short_samples(path, root, recipe.vision, skipped):
            if sample.est_tokens > length:
                skipped["longer than an SFT row"] += 1
                continue
            if any(isinstance(part, ImagePart) for m in sample.messages for part in m.content):
                roots.add(root.resolve())
            samples.append(sample)
    if not samples:
        raise ValueError(
            f"no usable short-context sample in {', '.join(map(str, inputs))} "
            f"(skipped: {dict(skipped) or 'none'})"
        )
    pictures = image_root(map(str, roots))
    tokens = [sample.est_tokens for sample in samples]
    chosen = select_budget(
        tokens, settings.token_budget, settings.seed, repeat=recipe.demo is not None
    )
    selected = sum(tokens[i] for i in chosen)
    if selected < settings.token_budget:
        ctx.log(
            f"sft: the short data holds {selected:,} tokens, less than the budget of "
            f"{settings.token_budget:,}; training on what there is"
        )
    shards = []
    for number, start in enumerate(range(0, len(chosen), SHARD_SAMPLES)):
        name = f"samples-{number:05d}.parquet"
        write_parquet(
            data_dir / name, (samples[i] for i in chosen[start : start + SHARD_SAMPLES]), Sample
        )
        shards.append(name)
    return finish(
        summary_path,
        key,
        shards,
        samples=len(chosen),
        distinct_samples=len(set(chosen)),
        tokens=selected,
        skipped=dict(skipped),
        image_root=pictures,
        shards=shards,
    )


def _data_settings(ctx: StageContext, image_root: str | None) -> dict[str, Any]:
    return {
        "mixture": str(ctx.dir / DATA_DIR),
        "pool": str(pool_path(ctx)),
        "image_root": image_root,
        "vision": ctx.recipe.vision.model_dump(mode="json"),
        "num_workers": render_workers(ctx.recipe),
    }


class SftStage(Contributor):
    name = "sft"

    def config(self, recipe: Recipe) -> dict[str, Any]:
        settings = _settings(recipe)
        return {
            "sft": settings.model_dump(mode="json"),
            "inputs": settings.data or recipe.synth.short_data,
            "vision": recipe.vision.model_dump(mode="json"),
        }

    def run(self, ctx: StageContext) -> dict[str, int]:
        (trainer_config,) = require(self.name, "seqpar_train", "TrainerConfig")
        recipe = ctx.recipe
        settings = _settings(recipe)
        summary = on_rank_zero(lambda: build_sft_data(ctx, settings))
        length, batch = settings.rows(recipe.train)
        config = trainer_config.from_recipe(
            recipe,
            output_dir=str(ctx.dir),
            # The LongPT export already carries the extended rope: nothing to apply again.
            model={"path": str(trained_checkpoint(ctx)), "rope": None},
            data=_data_settings(ctx, summary["image_root"]),
            max_length=length,
            global_batch_tokens=batch,
            token_budget=max(1, min(settings.token_budget, int(summary["tokens"]))),
            schedule=settings.schedule,
            checkpoint={"every": settings.checkpoint_every or recipe.train.checkpoint_every},
            seed=settings.seed,
        )
        ctx.log(
            f"sft: {summary['samples']} samples ({summary['tokens']:,} tokens) from the LongPT "
            f"checkpoint, {config.steps} steps"
        )
        counts = train_and_export(ctx, config, sft_checkpoint(ctx), recipe.train.dtype)
        if not counts:
            return counts  # a non-zero rank of a launched job
        return counts | {"samples": int(summary["samples"]), "tokens": int(summary["tokens"])}

    def progress(self, ctx: StageContext) -> dict[str, int]:
        return checkpoint_progress(ctx)

    def contribute(self, ctx: StageContext, data: ReportData) -> None:
        data.sft_loss = logged_losses(ctx)
