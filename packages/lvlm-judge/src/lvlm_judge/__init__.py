"""lvlm-judge: long-context VLM evaluation (MMLongBench documents 8K-512K, MM-NIAH) with
MMLongBench's rule scorer and a cached v1.1 LLM judge.

    items = load_data(["mmlb/"], lengths=[64 * K, 128 * K])
    runner = TransformersRunner("ckpt/", ContextResolver("mmlb/"))
    summary = run_eval(items, runner, "runs/ckpt", judge="rules")

The package exports what the commands run (load, run, score, report, suite, extend) and their
result types. Prompts, parsers, the judge cache and benchmark readers are reached by module
path, e.g. ``lvlm_judge.judge.cache`` or ``lvlm_judge.mmlb_source``.
"""

from lvlm_judge.context import ContextResolver
from lvlm_judge.datasets import DatasetError, LoadReport, load_data
from lvlm_judge.evaluate import RunSummary, read_results, run_eval
from lvlm_judge.extend import Extender, ExtensionError
from lvlm_judge.factory import make_llm_judge, make_runner
from lvlm_judge.judge.llm import LLMJudge
from lvlm_judge.results import ItemResult, score_table, table_row
from lvlm_judge.rules import score_answer
from lvlm_judge.runners import (
    GenerationRequest,
    OpenAIRunner,
    Runner,
    TransformersRunner,
    VLLMRunner,
)
from lvlm_judge.score_file import score_records
from lvlm_judge.suite import SuiteReport, run_suite

__version__ = "0.1.0"

__all__ = [
    "ContextResolver",
    "DatasetError",
    "ExtensionError",
    "Extender",
    "GenerationRequest",
    "ItemResult",
    "LLMJudge",
    "LoadReport",
    "OpenAIRunner",
    "RunSummary",
    "Runner",
    "SuiteReport",
    "TransformersRunner",
    "VLLMRunner",
    "__version__",
    "load_data",
    "make_llm_judge",
    "make_runner",
    "read_results",
    "run_eval",
    "run_suite",
    "score_answer",
    "score_records",
    "score_table",
    "table_row",
]
