"""lvlm-judge: long-context VLM evaluation (MMLongBench documents 8K-512K, MM-NIAH) with
MMLongBench's rule scorer and a cached v1.1 LLM judge.

    items = load_data(["mmlb/"], lengths=[64 * K, 128 * K])
    runner = TransformersRunner("ckpt/", ContextResolver("mmlb/"))
    summary = run_eval(items, runner, "runs/ckpt", judge="rules")
"""

from lvlm_judge.context import ContextResolver, MissingImageError, PoolLike, open_pool
from lvlm_judge.datasets import (
    DatasetError,
    LoadReport,
    load_data,
    load_doc_benchmark,
    load_doc_file,
    load_heldout,
    load_mmlb_folder,
    load_mmlb_tsv,
    load_niah_file,
    load_vlmevalkit_tsv,
    read_eval_items,
)
from lvlm_judge.evaluate import RunSummary, read_results, run_eval
from lvlm_judge.extend import Extender, ExtensionError, donor_documents
from lvlm_judge.factory import make_llm_judge, make_runner
from lvlm_judge.judge.cache import JudgeCache, cache_key
from lvlm_judge.judge.llm import JudgeRequest, JudgeStats, LLMJudge
from lvlm_judge.judge.parse import list_f1, parse_list_verdict, parse_single_verdict
from lvlm_judge.judge.prompts import OUR_JUDGE, PROMPT_VERSION, JudgePrompts
from lvlm_judge.metrics import ScoredAnswer, accuracy, generalized_f1
from lvlm_judge.mmlb_source import MMLBSourceError, read_judge_prompts, read_templates
from lvlm_judge.niah import count_positional, count_sum_match, score_niah
from lvlm_judge.prompting import (
    OUR_TEMPLATES,
    PROMPT_FORMATS,
    Prompt,
    PromptTemplates,
    build_prompt,
)
from lvlm_judge.results import ItemResult, score_table, table_row
from lvlm_judge.rules import is_certain_match, parse_output, score_answer, score_output
from lvlm_judge.runners import (
    EngineSizing,
    GenerationRequest,
    OpenAIRunner,
    Runner,
    TransformersRunner,
    VLLMRunner,
    size_engine,
)
from lvlm_judge.score_file import score_records
from mmprolong_runtime.chat_client import ClientSettings

__version__ = "0.1.0"

__all__ = [
    "OUR_JUDGE", "OUR_TEMPLATES", "PROMPT_FORMATS", "PROMPT_VERSION", "ClientSettings",
    "JudgePrompts", "LoadReport", "MMLBSourceError", "PromptTemplates", "load_mmlb_folder",
    "load_mmlb_tsv", "read_judge_prompts", "read_templates",
    "ContextResolver", "DatasetError", "EngineSizing", "Extender", "ExtensionError",
    "GenerationRequest", "ItemResult", "JudgeCache", "JudgeRequest", "JudgeStats", "LLMJudge",
    "MissingImageError", "OpenAIRunner", "PoolLike", "Prompt", "RunSummary", "Runner",
    "ScoredAnswer", "TransformersRunner", "VLLMRunner", "__version__", "accuracy",
    "build_prompt", "cache_key", "count_positional", "count_sum_match", "donor_documents",
    "generalized_f1", "is_certain_match", "list_f1", "load_data", "load_doc_benchmark",
    "load_doc_file", "load_heldout", "load_niah_file", "load_vlmevalkit_tsv", "make_llm_judge",
    "make_runner", "open_pool",
    "parse_list_verdict", "parse_output", "parse_single_verdict", "read_eval_items",
    "read_results", "run_eval", "score_answer", "score_niah", "score_output", "score_records",
    "score_table", "size_engine", "table_row",
]  # fmt: skip
