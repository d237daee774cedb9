"""The trainer's typed configuration: TOML file + ``a.b=value`` overrides, printed at start.

Recipe-level settings reuse the shared schema models (OptimizerConfig, ScheduleConfig,
RopeConfig, VisionTokenSpec); the rest is what only the trainer needs.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from mmprolong_schemas import ModelFamily, Recipe, VisionTokenSpec
from mmprolong_schemas.base import Model
from mmprolong_schemas.recipe import OptimizerConfig, RopeConfig, ScheduleConfig
from mmprolong_schemas.units import K, TokenCount
from seqpar_train.flops import steps_for_budget


class ModelSettings(Model):
    path: str | None = Field(
        default=None, description="HF checkpoint directory or hub id; None builds a tiny model."
    )
    tiny: ModelFamily | None = Field(
        default=None, description="Build a tiny random model of this family (tests, demos)."
    )
    rope: RopeConfig | None = Field(
        default=None, description="Extend the mRoPE base with longctx-rope before training."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSettings:
        if (self.path is None) == (self.tiny is None):
            raise ValueError("set exactly one of model.path and model.tiny")
        return self


class SyntheticData(Model):
    """Random packed rows (no PDFs): for demos, benchmarks and smoke tests."""

    docs_per_row: int = Field(default=4, ge=1)
    prompt_tokens: int = Field(default=24, ge=1)
    answer_tokens: int = Field(default=8, ge=1)
    images_per_doc: int = Field(default=1, ge=0)
    image_grid: tuple[int, int] = (4, 4)


class DataSettings(Model):
    mixture: str | None = Field(default=None, description="Directory of samples-*.parquet shards.")
    pool: str | None = Field(default=None, description="docpool directory holding the PDFs.")
    image_root: str | None = Field(
        default=None,
        description="Folder the relative image paths of short-context samples (LLaVA-style "
        "data) resolve under; paths leaving it are refused.",
    )
    synthetic: SyntheticData | None = None
    vision: VisionTokenSpec = Field(default_factory=VisionTokenSpec)
    pack_window: int = Field(
        default=4096,
        ge=1,
        description="Samples packed together (FFD); 4096 reaches the bin-packing lower bound "
        "on pool-native lengths, 256 stays 0.6% above it.",
    )
    fill: Literal["whole", "cut"] = Field(
        default="whole",
        description="'whole' packs whole samples (about 77% of a 128K row on pool-native "
        "lengths, the most any whole-sample packing reaches); 'cut' fills rows to about 98% "
        "by cutting documents after the pages their questions depend on, leaving out about "
        "a fifth of their tokens (docs/seqpar-train.md).",
    )
    min_keep: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="With fill='cut': the least share of a sample's tokens a cut keeps.",
    )
    num_workers: int = Field(default=2, ge=0, description="Rendering worker processes per rank.")

    @model_validator(mode="after")
    def _one_source(self) -> DataSettings:
        if (self.mixture is None) == (self.synthetic is None):
            raise ValueError("set exactly one of data.mixture and data.synthetic")
        if self.mixture is not None and self.pool is None:
            raise ValueError("data.mixture needs data.pool, where its pages are rendered from")
        return self


class ParallelSettings(Model):
    sp: int = Field(default=1, ge=1, description="Ulysses sequence-parallel size.")
    dp_shard: int = Field(default=-1, description="FSDP shard ranks; -1 = all ranks left by SP.")
    nproc_per_node: int = Field(default=1, ge=1)
    nnodes: int = Field(default=1, ge=1)
    attention: Literal["auto", "flash", "torch-varlen", "flex", "sdpa"] = "auto"
    activation_checkpointing: bool = True
    cpu_offload: bool = Field(default=False, description="Keep params and optimizer state on CPU.")
    param_dtype: Literal["bfloat16", "float32"] = Field(
        default="bfloat16", description="Compute dtype; gradients are reduced in float32."
    )


class CheckpointSettings(Model):
    every: int = Field(default=100, ge=1, description="Optimizer steps between checkpoints.")
    keep: int = Field(default=2, ge=1, description="Checkpoints kept (older ones are removed).")
    resume: bool = Field(default=True, description="Continue from the latest complete checkpoint.")


class ValidationSettings(Model):
    """The teacher-forced answer loss on held-out samples, per length bucket, every
    ``every`` steps (seqpar_train.validation); reporting only, it changes no trained weight."""

    every: int | None = Field(
        default=None, ge=1, description="Optimizer steps between validation passes; None: off."
    )
    mixture: str | None = Field(
        default=None,
        description="Held-out samples in the training format: a Parquet file or a folder of "
        "them, pages rendered from data.pool. None with synthetic data: synthetic samples "
        "of another seed.",
    )
    samples: int = Field(
        default=32, ge=1, description="Held-out samples evaluated (the first of a seeded order)."
    )


class TrainerConfig(Model):
    """Everything a run needs. ``steps`` derives from token_budget / global_batch_tokens
    unless ``max_steps`` caps it. (The recipe's ``train`` section, from which ``from_recipe``
    builds one, is ``mmprolong_schemas.recipe.TrainConfig``.)"""

    output_dir: str = "runs/seqpar"
    model: ModelSettings = Field(default_factory=lambda: ModelSettings(tiny=ModelFamily.QWEN2_5_VL))
    data: DataSettings = Field(default_factory=lambda: DataSettings(synthetic=SyntheticData()))
    parallel: ParallelSettings = Field(default_factory=ParallelSettings)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    max_length: TokenCount = Field(default=128 * K, ge=8)
    token_budget: TokenCount = Field(default=5 * 2**30, ge=1)
    global_batch_tokens: TokenCount = Field(default=4 * 2**20, ge=1)
    max_steps: int | None = Field(default=None, ge=1, description="Cap on the schedule's steps.")
    stop_after_steps: int | None = Field(
        default=None,
        ge=1,
        description="Stop (with a checkpoint) after this many steps of this launch, keeping "
        "the full run's schedule: for time-sliced jobs that resume later.",
    )
    loss_chunk: int = Field(default=4096, ge=1, description="Labelled positions per CE chunk.")
    peak_tflops: float | None = Field(
        default=None,
        gt=0,
        description="Dense bf16 peak per device for MFU; default: looked up by device name "
        "(seqpar_train.hardware). An unknown device reports no MFU.",
    )
    tensorboard: bool = False
    seed: int = 0

    @model_validator(mode="after")
    def _whole_rows(self) -> TrainerConfig:
        if self.global_batch_tokens % self.max_length:
            raise ValueError(
                f"global_batch_tokens {self.global_batch_tokens} is not a whole number of "
                f"{self.max_length}-token rows"
            )
        return self

    @model_validator(mode="after")
    def _held_out_source(self) -> TrainerConfig:
        held_out = self.validation.mixture
        if self.validation.every is not None and self.data.mixture is not None and not held_out:
            raise ValueError(
                "validation.every with data.mixture needs validation.mixture, the held-out "
                "samples to score"
            )
        if self.validation.mixture is not None and self.data.pool is None:
            raise ValueError(
                "validation.mixture needs data.pool, where its pages are rendered from"
            )
        return self

    @property
    def rows_per_step(self) -> int:
        return self.global_batch_tokens // self.max_length

    @property
    def steps(self) -> int:
        """Steps if every row were full: an upper bound. The trainer counts the steps that
        train ``token_budget`` real tokens on the packing plan (``data.budget``)."""
        budget_steps = steps_for_budget(self.token_budget, self.global_batch_tokens)
        return min(budget_steps, self.max_steps) if self.max_steps else budget_steps

    @classmethod
    def from_recipe(cls, recipe: Recipe, **fields: Any) -> TrainerConfig:
        """The trainer settings of a recipe (model, rope, optimizer, schedule, lengths, SP);
        ``fields`` set the rest (output_dir, data, ...)."""
        train = recipe.train
        parallel = ParallelSettings(
            sp=train.parallel.sp,
            dp_shard=train.parallel.fsdp,
            nproc_per_node=train.parallel.gpus_per_node,
            nnodes=train.parallel.nodes,
            cpu_offload=train.parallel.cpu_offload,
            attention=train.attention,
            activation_checkpointing=train.activation_checkpointing,
            param_dtype=train.dtype,
        )
        base: dict[str, Any] = {
            "model": ModelSettings(path=recipe.init_model, rope=recipe.rope),
            "parallel": parallel,
            "optimizer": train.optimizer,
            "schedule": train.schedule,
            "max_length": train.max_length,
            "token_budget": train.token_budget,
            "global_batch_tokens": train.global_batch_tokens,
            "checkpoint": CheckpointSettings(every=train.checkpoint_every),
            "seed": train.seed,
        }
        return cls.model_validate(base | fields)


def _set_dotted(data: dict[str, Any], dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ValueError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as 128K or runs/x
    node[keys[-1]] = value


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainerConfig:
    """Read a TOML config (or start from defaults) and apply ``key.sub=value`` overrides;
    values are JSON when they parse as JSON (numbers, true, [1, 2]), else strings."""
    data: dict[str, Any] = {}
    if path is not None:
        source = Path(path)
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{source}: not valid TOML ({error})") from None
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. parallel.sp=2)")
        key, raw = item.split("=", 1)
        _set_dotted(data, key.strip(), raw.strip())
    return TrainerConfig.model_validate(data)


def config_table(config: TrainerConfig) -> list[tuple[str, str]]:
    """Flattened ``(key, value)`` rows for printing."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                walk(f"{prefix}.{key}" if prefix else key, child)
        else:
            rows.append((prefix, json.dumps(value) if not isinstance(value, str) else value))

    walk("", config.model_dump(mode="json"))
    rows.append(("(derived) steps if rows were full", str(config.steps)))
    rows.append(("(derived) rows_per_step", str(config.rows_per_step)))
    return rows
