"""Typed records shared by every MMProLong package.

The data flow, one model per arrow: Document -> Segment -> QAPair -> Sample -> MixtureSpec
shards -> (training) -> EvalItem -> Prediction -> Judgement -> ScoreTable; a Recipe holds
every setting of a run. What produced an output (the RunManifest) and how stages run live in
mmprolong-runtime.
"""

from mmprolong_schemas.base import Model, Record, SchemaError, explain, validate_record
from mmprolong_schemas.document import (
    BBox,
    Block,
    BlockLabel,
    Document,
    DocumentMetadata,
    Page,
    Section,
    SectionSource,
)
from mmprolong_schemas.evaluation import (
    EvalItem,
    Judgement,
    JudgeSource,
    NiahMetric,
    Prediction,
    ScoreCell,
    ScoreTable,
)
from mmprolong_schemas.io import (
    append_jsonl,
    atomic_path,
    read_jsonl,
    read_parquet,
    read_parquet_row,
    record_to_row,
    records_to_table,
    write_jsonl,
    write_parquet,
    write_parquet_rows,
)
from mmprolong_schemas.qa import (
    NOT_ANSWERABLE,
    VQA_TASKS,
    Answer,
    AnswerFormat,
    EvidenceSource,
    PageRange,
    QAPair,
    Segment,
    Task,
    coerce_answer,
)
from mmprolong_schemas.recipe import (
    DemoConfig,
    EvalConfig,
    OptimizerConfig,
    ParallelConfig,
    PoolConfig,
    Recipe,
    RopeConfig,
    RopeMethod,
    ScheduleConfig,
    SftConfig,
    SynthConfig,
    TrainConfig,
)
from mmprolong_schemas.sample import (
    HistogramBin,
    ImagePart,
    LengthDistribution,
    Message,
    MixtureSpec,
    PagePart,
    Part,
    Sample,
    TextPart,
)
from mmprolong_schemas.units import B, K, M, TokenCount, format_tokens, parse_tokens
from mmprolong_schemas.version import SCHEMA_VERSION
from mmprolong_schemas.vision_tokens import (
    IMAGE_WRAPPER_TOKENS,
    ModelFamily,
    VisionTokenSpec,
    image_tokens,
    page_tokens,
    pixels_at_dpi,
    smart_resize,
)

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

__all__ = [
    "B",
    "IMAGE_WRAPPER_TOKENS",
    "K",
    "M",
    "NOT_ANSWERABLE",
    "RECORD_MODELS",
    "SCHEMA_VERSION",
    "DemoConfig",
    "VQA_TASKS",
    "Answer",
    "AnswerFormat",
    "BBox",
    "Block",
    "BlockLabel",
    "Document",
    "DocumentMetadata",
    "EvalConfig",
    "EvalItem",
    "EvidenceSource",
    "HistogramBin",
    "ImagePart",
    "JudgeSource",
    "Judgement",
    "LengthDistribution",
    "Message",
    "MixtureSpec",
    "Model",
    "ModelFamily",
    "NiahMetric",
    "OptimizerConfig",
    "Page",
    "PagePart",
    "PageRange",
    "ParallelConfig",
    "Part",
    "PoolConfig",
    "Prediction",
    "QAPair",
    "Recipe",
    "Record",
    "RopeConfig",
    "RopeMethod",
    "Sample",
    "ScheduleConfig",
    "SchemaError",
    "ScoreCell",
    "ScoreTable",
    "Section",
    "SectionSource",
    "Segment",
    "SftConfig",
    "SynthConfig",
    "Task",
    "TextPart",
    "TokenCount",
    "TrainConfig",
    "VisionTokenSpec",
    "append_jsonl",
    "atomic_path",
    "coerce_answer",
    "explain",
    "format_tokens",
    "image_tokens",
    "page_tokens",
    "parse_tokens",
    "pixels_at_dpi",
    "read_jsonl",
    "read_parquet",
    "read_parquet_row",
    "record_to_row",
    "records_to_table",
    "smart_resize",
    "validate_record",
    "write_jsonl",
    "write_parquet",
    "write_parquet_rows",
]
