"""MMLongBench's own prompts, read at run time from the user's checkout of its repository.

This package ships none of MMLongBench's wording. With ``--mmlb-source DIR`` (a clone of
github.com/EdinburghNLP/MMLongBench) the templates are read from its source files with ``ast``
(nothing there is imported or run):

- data.py: in ``load_doc_qa_with_llm_judge`` (v1.1; else ``load_doc_qa``) the string
  assignments ``user_template``, ``item_template`` and ``system_template``, and the document
  prefix its inner ``update`` adds to the question (``question = "<prefix>".format(...) +
  question``); the same three of ``load_mm_niah_text``, ``load_mm_niah_image_count`` and
  ``load_mm_niah_image_mc``. Every system_template must be the "Answer:" our scoring
  prepends and parses after, as its eval.py does with it.
- utils.py: in ``eval_docqa_score_with_llm_judge`` and ``eval_docqa_list_score_with_llm_judge``
  the two prompt names joined into the judge prompt (``prompt = TASK + CASE.format(...)``) and
  the ``max_tokens`` of its request; utils_prompt.py: the values of those names.

A file or name that is not there is an error naming what was looked for, so a changed upstream
layout never falls back silently to other wording.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from lvlm_judge.judge.prompts import JudgePrompts
from lvlm_judge.prompting import MMLB_FORMAT, PromptTemplates
from lvlm_judge.rules import ANSWER_PREFIX
from mmprolong_runtime.errors import InputError

DOC_LOADERS = ("load_doc_qa_with_llm_judge", "load_doc_qa")
NIAH_LOADERS = {
    "text": "load_mm_niah_text",
    "text_count": "load_mm_niah_text",
    "image_count": "load_mm_niah_image_count",
    "image_mc": "load_mm_niah_image_mc",
}
SINGLE_JUDGE = "eval_docqa_score_with_llm_judge"
LIST_JUDGE = "eval_docqa_list_score_with_llm_judge"


class MMLBSourceError(InputError):
    """The checkout does not hold what MMLongBench v1.1's layout puts there."""


def _parse(path: Path) -> ast.Module:
    if not path.is_file():
        raise MMLBSourceError(f"{path}: not found; --mmlb-source must be an MMLongBench checkout")
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as error:
        raise MMLBSourceError(f"{path}: cannot be parsed ({error.msg})") from None


def _function(module: ast.Module, names: tuple[str, ...], path: Path) -> ast.FunctionDef:
    found = {n.name: n for n in ast.walk(module) if isinstance(n, ast.FunctionDef)}
    for name in names:
        if name in found:
            return found[name]
    raise MMLBSourceError(f"{path}: no function {' or '.join(names)}")


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _assigned_strings(function: ast.FunctionDef) -> dict[str, str]:
    """Names assigned a string literal directly in ``function`` (not in nested functions)."""
    found: dict[str, str] = {}
    for statement in function.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], _string(statement.value)
            if isinstance(target, ast.Name) and value is not None:
                found[target.id] = value
    return found


def _templates_of(function: ast.FunctionDef, path: Path) -> dict[str, str]:
    strings = _assigned_strings(function)
    for name in ("user_template", "system_template"):
        if name not in strings:
            raise MMLBSourceError(f"{path}: {function.name} assigns no string {name}")
    return strings


def _question_prefix(function: ast.FunctionDef, path: Path) -> str:
    """The literal of ``question = "<prefix>".format(...) + question`` in ``function``."""
    for node in ast.walk(function):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.BinOp)):
            continue
        targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        call = node.value.left
        if (
            targets == ["question"]
            and isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "format"
        ):
            prefix = _string(call.func.value)
            if prefix is not None:
                return prefix
    raise MMLBSourceError(f"{path}: {function.name} adds no document prefix to the question")


def _check_prefix(path: Path, loader: str, system_template: str) -> None:
    """MMLongBench's eval.py prepends a loader's system_template to each generation and its
    post-processing parses after it; our scoring prepends and parses after ANSWER_PREFIX. A
    checkout whose prefix differs would be scored differently, so it is refused."""
    if system_template != ANSWER_PREFIX:
        raise MMLBSourceError(
            f"{path}: {loader} prefixes generations with {system_template!r}; lvlm-judge "
            f"prefixes and parses after {ANSWER_PREFIX!r}, so its scores would differ"
        )


def read_templates(checkout: str | Path) -> PromptTemplates:
    """MMLongBench's document-QA and MM-NIAH templates from ``checkout``/data.py."""
    path = Path(checkout) / "data.py"
    module = _parse(path)
    doc = _function(module, DOC_LOADERS, path)
    doc_strings = _templates_of(doc, path)
    if "item_template" not in doc_strings:
        raise MMLBSourceError(f"{path}: {doc.name} assigns no string item_template")
    niah_strings = {
        kind: _templates_of(_function(module, (name,), path), path)
        for kind, name in NIAH_LOADERS.items()
    }
    _check_prefix(path, doc.name, doc_strings["system_template"])
    for kind, strings in niah_strings.items():
        _check_prefix(path, NIAH_LOADERS[kind], strings["system_template"])
    return PromptTemplates(
        name=MMLB_FORMAT,
        doc_user=doc_strings["user_template"],
        doc_page=doc_strings["item_template"],
        doc_question=_question_prefix(doc, path),
        niah_user={kind: strings["user_template"] for kind, strings in niah_strings.items()},
        prefill=doc_strings["system_template"],
        source=str(Path(checkout).resolve()),
    )


def _judge_names(function: ast.FunctionDef, path: Path) -> tuple[str, str, int]:
    """(task name, case name, max_tokens) of ``prompt = TASK + CASE.format(...)`` and the
    request's max_tokens keyword."""
    names: tuple[str, str] | None = None
    max_tokens: int | None = None
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Assign)
            and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["prompt"]
            and isinstance(node.value, ast.BinOp)
            and isinstance(node.value.left, ast.Name)
            and isinstance(node.value.right, ast.Call)
            and isinstance(node.value.right.func, ast.Attribute)
            and isinstance(node.value.right.func.value, ast.Name)
        ):
            names = (node.value.left.id, node.value.right.func.value.id)
        if (
            isinstance(node, ast.keyword)
            and node.arg == "max_tokens"
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, int)
        ):
            max_tokens = node.value.value
    if names is None or max_tokens is None:
        raise MMLBSourceError(
            f"{path}: {function.name} has no 'prompt = TASK + CASE.format(...)' or no max_tokens"
        )
    return names[0], names[1], max_tokens


def read_judge_prompts(checkout: str | Path) -> JudgePrompts:
    """MMLongBench v1.1's judge prompts and request parameters from ``checkout``."""
    root = Path(checkout)
    utils_path = root / "utils.py"
    utils = _parse(utils_path)
    single = _judge_names(_function(utils, (SINGLE_JUDGE,), utils_path), utils_path)
    listed = _judge_names(_function(utils, (LIST_JUDGE,), utils_path), utils_path)
    prompts_path = root / "utils_prompt.py"
    constants: dict[str, str] = {}
    for statement in _parse(prompts_path).body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], _string(statement.value)
            if isinstance(target, ast.Name) and value is not None:
                constants[target.id] = value
    wanted = [single[0], single[1], listed[0], listed[1]]
    missing = [name for name in wanted if name not in constants]
    if missing:
        raise MMLBSourceError(f"{prompts_path}: no string constant {', '.join(missing)}")
    texts = [constants[name] for name in wanted]
    digest = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()[:12]
    if single[2] != listed[2]:
        raise MMLBSourceError(f"{utils_path}: the two judge requests differ in max_tokens")
    single_task, single_case, list_task, list_case = texts
    return JudgePrompts(
        single_task,
        single_case,
        list_task,
        list_case,
        version=f"{MMLB_FORMAT}:{digest}",
        max_tokens=single[2],
        temperature=None,
        source=str(root.resolve()),
    )
