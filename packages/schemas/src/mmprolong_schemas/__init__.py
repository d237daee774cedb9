"""Typed records shared by every MMProLong package.

The data flow, one model per arrow: Document -> Segment -> QAPair -> Sample -> MixtureSpec
shards -> (training) -> EvalItem -> Prediction -> Judgement -> ScoreTable; a Recipe holds
every setting of a run. What produced an output (the RunManifest) and how stages run live in
mmprolong-runtime.
"""

from mmprolong_schemas.base import Record, SchemaError
from mmprolong_schemas.document import BBox, Block, BlockLabel, Document, Page, Section
from mmprolong_schemas.evaluation import (
    EvalItem,
    Judgement,
    JudgeSource,
    NiahMetric,
    Prediction,
    ScoreCell,
    ScoreTable,
)
from mmprolong_schemas.io import read_jsonl, read_parquet, write_jsonl, write_parquet
from mmprolong_schemas.qa import AnswerFormat, EvidenceSource, PageRange, QAPair, Segment, Task
from mmprolong_schemas.recipe import Recipe
from mmprolong_schemas.sample import ImagePart, Message, MixtureSpec, PagePart, Sample, TextPart
from mmprolong_schemas.units import format_tokens, parse_tokens
from mmprolong_schemas.version import SCHEMA_VERSION
from mmprolong_schemas.vision_tokens import ModelFamily, VisionTokenSpec, image_tokens, page_tokens

__version__ = "0.1.0"

RECORD_MODELS: dict[str, type[Record]] = {
    model.__name__: model
    for model in (
        Document,
        Segment,
        QAPair,
        Sample,
        MixtureSpec,
        Recipe,
        EvalItem,
        Prediction,
        Judgement,
        ScoreTable,
    )
}
"""Every top-level record, by name, as the CLI and the readers know them."""

# The records, the parts and enums they are built from, their file I/O, the page token count
# and token units. The rest is reached by module path: the recipe's sections
# (mmprolong_schemas.recipe), the Model base (.base), row-level Parquet and atomic writes (.io),
# K/M/B and TokenCount (.units), resize maths (.vision_tokens), answer coercion (.qa), ...
__all__ = [
    "RECORD_MODELS",
    "SCHEMA_VERSION",
    "AnswerFormat",
    "BBox",
    "Block",
    "BlockLabel",
    "Document",
    "EvalItem",
    "EvidenceSource",
    "ImagePart",
    "JudgeSource",
    "Judgement",
    "Message",
    "MixtureSpec",
    "ModelFamily",
    "NiahMetric",
    "Page",
    "PagePart",
    "PageRange",
    "Prediction",
    "QAPair",
    "Recipe",
    "Record",
    "SchemaError",
    "ScoreCell",
    "ScoreTable",
    "Section",
    "Segment",
    "Sample",
    "Task",
    "TextPart",
    "VisionTokenSpec",
    "format_tokens",
    "image_tokens",
    "page_tokens",
    "parse_tokens",
    "read_jsonl",
    "read_parquet",
    "write_jsonl",
    "write_parquet",
]
