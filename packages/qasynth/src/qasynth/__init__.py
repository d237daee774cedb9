"""qasynth: long-document VQA synthesis, OCR baselines and token-budgeted mixtures.

Stages (each also a ``qasynth`` command): ``segment_pool`` -> ``generate_pairs`` ->
``assemble_samples`` -> ``build_mixture``; ``write_review``/``ingest`` for the hand check.
"""

from qasynth.assemble import (
    AssembleConfig,
    format_answer,
    ocr_full_sample,
    ocr_needle_sample,
    page_transcript,
    vqa_sample,
)
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, GenerateResult, GenerateStats, Rejection, generate
from qasynth.mix import MixtureError, build_mixture, load_index, select
from qasynth.page_images import EncodedPage, PageImages
from qasynth.parsing import QARejectReason, QAValidator, Rejected, parse_reply
from qasynth.pipeline import assemble_samples, generate_pairs, segment_pool
from qasynth.pixels import PagePixels, RasterPage
from qasynth.prompts import PROMPT_VERSION, Prompt, build_prompt, reply_json_schema
from qasynth.review import ReviewSummary, ingest, wilson_interval, write_review
from qasynth.run_stats import run_statistics
from qasynth.segments import (
    DocInfo,
    DocOutline,
    DocumentSelection,
    sample_segments,
    select_documents,
)
from qasynth.short import load_short_samples
from qasynth.teachers import (
    OpenAITeacher,
    RulesTeacher,
    Teacher,
    TeacherReply,
    TeacherRequest,
    TransformersTeacher,
    VLLMTeacher,
    make_teacher,
)
from qasynth.token_estimates import text_tokens

__version__ = "0.1.0"

__all__ = [
    "PROMPT_VERSION",
    "AssembleConfig",
    "DocInfo",
    "DocOutline",
    "DocumentSelection",
    "EncodedPage",
    "GenerateConfig",
    "GenerateResult",
    "GenerateStats",
    "MixtureError",
    "OpenAITeacher",
    "PageImages",
    "PagePixels",
    "Prompt",
    "QAValidator",
    "RasterPage",
    "Rejected",
    "QARejectReason",
    "Rejection",
    "RequestCache",
    "ReviewSummary",
    "RulesTeacher",
    "Teacher",
    "TeacherReply",
    "TeacherRequest",
    "TransformersTeacher",
    "VLLMTeacher",
    "__version__",
    "assemble_samples",
    "build_mixture",
    "build_prompt",
    "format_answer",
    "generate",
    "generate_pairs",
    "ingest",
    "load_index",
    "load_short_samples",
    "make_teacher",
    "ocr_full_sample",
    "ocr_needle_sample",
    "page_transcript",
    "parse_reply",
    "reply_json_schema",
    "run_statistics",
    "sample_segments",
    "segment_pool",
    "select",
    "select_documents",
    "text_tokens",
    "vqa_sample",
    "wilson_interval",
    "write_review",
]
