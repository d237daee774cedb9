import pytest

from qasynth.teachers import (
    OpenAITeacher,
    RulesTeacher,
    TransformersTeacher,
    VLLMTeacher,
    make_teacher,
)


class Pool:
    def get(self, doc_id):
        raise KeyError(doc_id)

    def render(self, doc_id, pages, dpi=144):
        return []


def test_backends_by_name() -> None:
    assert isinstance(make_teacher("rules", Pool()), RulesTeacher)
    openai = make_teacher("openai", Pool(), model="m", base_url="http://127.0.0.1:1/v1")
    assert isinstance(openai, OpenAITeacher) and openai.name == "openai:m"
    assert isinstance(make_teacher("vllm", Pool(), model="m"), VLLMTeacher)


def test_transformers_backend_loads_a_saved_checkpoint(tmp_path) -> None:
    tiny = pytest.importorskip("longctx_rope.tiny")
    tiny.save_tiny_checkpoint("qwen2.5-vl", tmp_path / "ckpt")
    teacher = make_teacher("transformers", Pool(), model=str(tmp_path / "ckpt"), max_tokens=16)
    assert isinstance(teacher, TransformersTeacher)
    assert teacher.name == f"transformers:{tmp_path / 'ckpt'}"


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("gpt", {}, "unknown teacher"),
        ("openai", {}, "needs a model"),
        ("openai", {"model": "m"}, "base URL"),
    ],
)
def test_missing_settings_are_named(kind, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        make_teacher(kind, Pool(), **options)
