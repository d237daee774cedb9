"""qasynth: long-document VQA synthesis, OCR baselines and token-budgeted mixtures.

Stages (each also a ``qasynth`` command): ``segment_pool`` -> ``generate_pairs`` ->
``assemble_samples`` -> ``build_mixture``; ``write_review``/``ingest_review`` for the hand check.
"""

from qasynth.assemble import AssembleConfig
from qasynth.generate import GenerateConfig
from qasynth.mix import MixtureError, build_mixture
from qasynth.pipeline import assemble_samples, generate_pairs, segment_pool
from qasynth.review import ReviewSummary, ingest_review, write_review
from qasynth.run_stats import run_statistics
from qasynth.segments import DocumentSelection
from qasynth.short import load_short_samples
from qasynth.teachers import Teacher, make_teacher

__version__ = "0.1.0"

# The stages, their settings and the teacher factory; the rest is reachable by module path
# (qasynth.teachers for the teacher classes, qasynth.assemble for single samples, ...).
__all__ = [
    "AssembleConfig",
    "DocumentSelection",
    "GenerateConfig",
    "MixtureError",
    "ReviewSummary",
    "Teacher",
    "__version__",
    "assemble_samples",
    "build_mixture",
    "generate_pairs",
    "ingest_review",
    "load_short_samples",
    "make_teacher",
    "run_statistics",
    "segment_pool",
    "write_review",
]
