"""The recipe: every setting of a LongPT run, from PDF rendering to evaluation.

Defaults are the paper's final MMProLong recipe (its Table 6): Qwen2.5-VL-7B-Instruct,
40/40/20 extract-single/extract-multi/reasoning by tokens, pool-native lengths (32-50 page
documents), no short data, mRoPE base 1e6 -> 4e6, 131072-token rows, a 5B-token budget,
AdamW (wd 0.1, betas 0.9/0.95), lr 1e-5 with 10% warmup and cosine decay to 1e-6, 4M-token
global batches of 32 sequences, SP 2 x FSDP 4 on 8-GPU nodes, 8 nodes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from mmprolong_schemas.base import Model, Record
from mmprolong_schemas.qa import VQA_TASKS, Task
from mmprolong_schemas.sample import MixtureSpec
from mmprolong_schemas.units import B, K, M, TokenCount
from mmprolong_schemas.vision_tokens import ModelFamily, VisionTokenSpec


class PoolConfig(Model):
    min_pages: int = Field(default=20, ge=1)
    max_pages: int = Field(default=200, ge=1)
    layout: Literal["fast", "model"] = "fast"
    inputs: list[str] = Field(
        default_factory=list,
        description="PDF files or folders to ingest; left empty when the run generates its corpus.",
    )
    held_out_documents: int = Field(
        default=0,
        ge=0,
        description="Pooled documents never trained on: their QA samples score the validation "
        "loss while training (train.eval_every). Chosen by doc_id (a content hash), so the "
        "choice does not depend on file names or input order. A demo holds out its own.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PoolConfig:
        if self.max_pages < self.min_pages:
            raise ValueError(f"max_pages {self.max_pages} is below min_pages {self.min_pages}")
        return self


class SynthConfig(Model):
    tasks: list[Task] = Field(default_factory=lambda: list(VQA_TASKS))
    segment_pages: tuple[int, int] = (8, 15)
    teacher: str = Field(default="rules", description="rules, openai, vllm or transformers.")
    teacher_model: str | None = None
    teacher_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible server of the openai teacher (else OPENAI_BASE_URL); "
        "the key comes from OPENAI_API_KEY, never from the recipe.",
    )
    short_data: list[str] = Field(
        default_factory=list,
        description="LLaVA-OneVision-style JSON, JSONL or Parquet files of short-context "
        "samples, for a mixture with short_share > 0.",
    )
    page_index_text: bool = Field(
        default=False, description="Put 'Page N:' before each page image (off in the recipe)."
    )
    seed: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> SynthConfig:
        low, high = self.segment_pages
        if not 1 <= low <= high:
            raise ValueError(f"segment_pages {self.segment_pages} is not a range of pages")
        return self


class RopeMethod(StrEnum):
    NTK_BASE = "ntk-base"
    SET_BASE = "set-base"
    LINEAR = "linear"
    YARN = "yarn"


class RopeConfig(Model):
    method: RopeMethod = RopeMethod.NTK_BASE
    original_base: float = Field(default=1e6, gt=0)
    base: float | None = Field(
        default=4e6, gt=0, description="Target base; None derives it from the method."
    )
    original_context: TokenCount = Field(default=32 * K, ge=1)
    target_context: TokenCount = Field(default=128 * K, ge=1)


class OptimizerConfig(Model):
    name: Literal["adamw"] = "adamw"
    weight_decay: float = Field(default=0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(default=1e-8, gt=0)
    grad_clip: float = Field(default=1.0, gt=0)


class ScheduleConfig(Model):
    peak_lr: float = Field(default=1e-5, gt=0)
    final_lr: float = Field(default=1e-6, ge=0)
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1)
    kind: Literal["cosine", "linear", "constant"] = "cosine"


class ParallelConfig(Model):
    sp: int = Field(default=2, ge=1, description="Ulysses sequence-parallel size.")
    fsdp: int = Field(default=4, ge=1, description="FSDP shard size.")
    gpus_per_node: int = Field(default=8, ge=1)
    nodes: int = Field(default=8, ge=1)
    cpu_offload: bool = Field(
        default=False,
        description="FSDP CPU offload: sharded parameters, gradients and optimizer state in "
        "host memory (the optimizer steps on the CPU).",
    )

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def dp_replicate(self) -> int:
        return self.world_size // (self.sp * self.fsdp)

    @model_validator(mode="after")
    def _divides(self) -> ParallelConfig:
        if self.world_size % (self.sp * self.fsdp):
            raise ValueError(
                f"SP {self.sp} x FSDP {self.fsdp} does not divide {self.world_size} GPUs "
                f"({self.nodes} nodes x {self.gpus_per_node})"
            )
        return self


class TrainConfig(Model):
    max_length: TokenCount = Field(default=128 * K, ge=1)
    token_budget: TokenCount = Field(default=5 * B, ge=1)
    global_batch_tokens: TokenCount = Field(default=4 * M, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    attention: Literal["auto", "flash", "torch-varlen", "flex", "sdpa"] = "auto"
    activation_checkpointing: bool = True
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    checkpoint_every: int = Field(
        default=100, ge=1, description="Optimizer steps between checkpoints."
    )
    row_fill: Literal["whole", "cut"] = Field(
        default="whole",
        description="How training rows are filled: 'whole' samples keep the pool-native "
        "lengths (about 77% of a 128K row on them, the most whole samples allow); 'cut' "
        "fills rows to about 98% by cutting documents after the pages their questions "
        "depend on, leaving out about a fifth of their tokens.",
    )
    row_min_keep: float = Field(
        default=0.5, gt=0, le=1, description="With row_fill='cut': the least share a cut keeps."
    )
    extra_sft: bool = Field(
        default=False,
        description="Follow LongPT with the short SFT stage (the OCR ablations); its settings "
        "are the recipe's [sft] section (the paper's when absent).",
    )
    eval_every: int | None = Field(
        default=100,
        ge=1,
        description="Optimizer steps between held-out answer-loss passes (per length bucket, "
        "on training-format samples of the held-out documents); None: off. Reporting only: "
        "it is not part of the train stage's hash.",
    )
    eval_samples: int = Field(
        default=32, ge=1, description="Held-out samples each validation pass scores."
    )
    seed: int = 0

    @property
    def sequences_per_batch(self) -> int:
        return self.global_batch_tokens // self.max_length

    @property
    def steps(self) -> int:
        """Optimizer steps to spend the budget: 5B / 4M = 1280 in the recipe."""
        return -(-self.token_budget // self.global_batch_tokens)

    @model_validator(mode="after")
    def _whole_sequences(self) -> TrainConfig:
        if self.global_batch_tokens % self.max_length:
            raise ValueError(
                f"global_batch_tokens {self.global_batch_tokens} is not a whole number of "
                f"{self.max_length}-token sequences"
            )
        if self.schedule.final_lr > self.schedule.peak_lr:
            raise ValueError("final_lr is above peak_lr")
        return self


class SftConfig(Model):
    """The short-context SFT stage that follows LongPT when ``train.extra_sft`` is set (the
    paper's OCR ablations: 5B tokens of LLaVA-OneVision SFT data). It starts from the LongPT
    checkpoint with a fresh optimizer and schedule and keeps its rope; fields left unset
    follow ``train``."""

    data: list[str] = Field(
        default_factory=list,
        description="LLaVA-OneVision-style JSON, JSONL or Parquet files; empty uses "
        "synth.short_data.",
    )
    token_budget: TokenCount = Field(default=5 * B, ge=1)
    max_length: TokenCount | None = Field(default=None, ge=1, description="None: train's.")
    global_batch_tokens: TokenCount | None = Field(default=None, ge=1, description="None: train's.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    checkpoint_every: int | None = Field(default=None, ge=1, description="None: train's.")
    seed: int = 0

    def rows(self, train: TrainConfig) -> tuple[int, int]:
        """(row length, global batch tokens) of the stage, falling back to LongPT's."""
        return (
            self.max_length or train.max_length,
            self.global_batch_tokens or train.global_batch_tokens,
        )


class EvalConfig(Model):
    datasets: list[str] = Field(default_factory=lambda: ["mmlongdoc", "longdocurl", "slidevqa"])
    lengths: list[TokenCount] = Field(default_factory=lambda: [64 * K, 128 * K])
    judge: Literal["rules", "llm"] = "llm"
    judge_model: str | None = None
    judge_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible server of the LLM judge (else OPENAI_BASE_URL); the key "
        "comes from OPENAI_API_KEY, never from the recipe.",
    )
    prompt_format: Literal["lvlm-judge-v1", "lvlm-judge-v1-page-index", "mmlb-v1.1"] = Field(
        default="lvlm-judge-v1",
        description="Our prompts (lvlm-judge-v1, -page-index) or MMLongBench's (mmlb-v1.1), "
        "read at run time from mmlb_source.",
    )
    mmlb_source: str | None = Field(
        default=None,
        description="The user's checkout of MMLongBench: its templates and v1.1 judge prompts "
        "(protocol mmlb-v1.1; the judge then runs on every document-QA item).",
    )
    subset: Literal["mmlb", "all"] = Field(
        default="mmlb",
        description="MMLongBench's seeded subsets (doc QA 100, NIAH 50, seed 42) or every item.",
    )
    max_new_tokens: int = Field(default=128, ge=1)
    runner: Literal["vllm", "openai", "transformers"] = "vllm"
    data_dir: str | None = Field(
        default=None,
        description="MMLongBench as downloaded: mmlb_data/ (or the folder holding it) with the "
        "images in mmlb_image/ beside it; VLMEvalKit's MMLongBench_256K.tsv / _512K.tsv there "
        "give the 256K and 512K items (their images under mmlb_image/256K, /512K).",
    )
    suite: list[Literal["video", "short", "niah", "vtc"]] = Field(
        default_factory=list,
        description="lvlm-judge suite groups run on the base and trained checkpoints after "
        "training: video and short through lmms-eval, niah from data_dir's NIAH/ files, vtc "
        "from vtc_data.",
    )
    vtc_data: str | None = Field(
        default=None, description="VTCBench-Wild release folder (Hugging Face MLLM-CL/VTCBench)."
    )
    vtc_instructions: str | None = Field(
        default=None,
        description="JSON of VTCBench split -> instruction [default: read from vtc_source].",
    )
    vtc_source: str | None = Field(
        default=None,
        description="The user's checkout of VTCBench: its per-split instructions and its Memory "
        "judge prompt, model (gpt-4o-mini unless judge_model names another) and request are "
        "read from it at run time (Memory labelled as VTCBench's protocol); without it, the "
        "Memory judge uses our wording and needs judge_model.",
    )
    lmms_python: str | None = Field(
        default=None,
        description="Interpreter of the environment holding lmms-eval [default: this one].",
    )
    max_num_frames: int = Field(default=32, ge=1, description="Frames sampled per video.")
    attn_implementation: Literal["flash_attention_2", "sdpa", "eager"] | None = None

    @model_validator(mode="after")
    def _mmlb_needs_source(self) -> EvalConfig:
        if self.prompt_format == "mmlb-v1.1" and not self.mmlb_source:
            raise ValueError(
                "eval.prompt_format mmlb-v1.1 is MMLongBench's own wording: set eval.mmlb_source "
                "to your checkout of github.com/EdinburghNLP/MMLongBench"
            )
        return self


class DemoConfig(Model):
    """A self-contained run: a generated PDF corpus instead of the user's PDFs and a tiny
    randomly initialised model built from config instead of downloaded weights (demo, CI)."""

    documents: int = Field(default=12, ge=2, description="PDFs to generate.")
    pages: tuple[int, int] = Field(default=(10, 16), description="Pages per generated PDF.")
    held_out_documents: int = Field(
        default=2, ge=1, description="Generated PDFs kept out of training and evaluated on."
    )
    tiny_model: bool = Field(
        default=True, description="Build a tiny model of the recipe's family from config."
    )
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> DemoConfig:
        low, high = self.pages
        if not 1 <= low <= high:
            raise ValueError(f"pages {self.pages} is not a range of pages")
        if self.held_out_documents >= self.documents:
            raise ValueError(
                f"held_out_documents {self.held_out_documents} leaves no document of "
                f"{self.documents} for training"
            )
        return self


class Recipe(Record):
    name: str = "mmprolong-qwen2.5-vl-7b"
    description: str = ""
    init_model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    family: ModelFamily = ModelFamily.QWEN2_5_VL
    vision: VisionTokenSpec = Field(default_factory=VisionTokenSpec)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    mixture: MixtureSpec = Field(default_factory=MixtureSpec)
    rope: RopeConfig = Field(default_factory=RopeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    sft: SftConfig | None = Field(
        default=None,
        description="Settings of the SFT stage run when train.extra_sft is set; None uses the "
        "paper's (5B tokens).",
    )
    demo: DemoConfig | None = Field(
        default=None, description="Set for a self-contained run on generated PDFs and a tiny model."
    )

    @model_validator(mode="before")
    @classmethod
    def _family_vision(cls, data: Any) -> Any:
        """Vision settings the recipe leaves out come from its family's preprocessor (a
        qwen3-vl recipe estimates with factor 32 and 65536 / 16777216 pixels)."""
        if not isinstance(data, dict) or "family" not in data:
            return data
        vision = data.get("vision")
        if vision is None or isinstance(vision, dict):
            family = ModelFamily(data["family"])
            low, high = family.pixel_limits
            defaults = {"factor": family.resize_factor, "min_pixels": low, "max_pixels": high}
            data = {**data, "vision": {**defaults, **(vision or {})}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.vision.factor != self.family.resize_factor:
            raise ValueError(
                f"vision.factor {self.vision.factor} does not match {self.family.value}, "
                f"which resizes by {self.family.resize_factor}"
            )
        if self.mixture.max_length > self.train.max_length:
            raise ValueError(
                f"mixture.max_length {self.mixture.max_length} is longer than the training rows "
                f"train.max_length {self.train.max_length}"
            )
        if self.rope.target_context < self.train.max_length:
            raise ValueError(
                f"rope.target_context {self.rope.target_context} is shorter than "
                f"train.max_length {self.train.max_length}"
            )
        if self.sft is not None:
            length, batch = self.sft.rows(self.train)
            if batch % length:
                raise ValueError(
                    f"sft global batch of {batch} tokens is not a whole number of {length}-token "
                    "rows"
                )
            if length > self.rope.target_context:
                raise ValueError(
                    f"sft.max_length {length} is longer than rope.target_context "
                    f"{self.rope.target_context}"
                )
            if self.sft.schedule.final_lr > self.sft.schedule.peak_lr:
                raise ValueError("sft.schedule.final_lr is above its peak_lr")
        return self

    @property
    def sft_stage(self) -> SftConfig | None:
        """The SFT stage's settings when the recipe has one (``train.extra_sft``), else None."""
        if not self.train.extra_sft:
            return None
        return self.sft if self.sft is not None else SftConfig()
