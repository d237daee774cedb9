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


def test_the_server_and_key_come_from_the_shared_client_settings(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:2/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    teacher = make_teacher("openai", Pool(), model="m", concurrency=3)
    assert teacher.base_url == "http://127.0.0.1:2/v1"
    assert teacher.client_settings.api_key == "env-key"
    assert teacher.client_settings.concurrency == 3
    given = OpenAITeacher("m", "http://127.0.0.1:3/v1", Pool(), api_key="given-key")
    assert given.base_url == "http://127.0.0.1:3/v1"
    assert given.client_settings.api_key == "given-key"


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("gpt", {}, "unknown teacher"),
        ("openai", {}, "needs a model"),
        ("openai", {"model": "m"}, "base URL"),
        ("openai", {"model": "m", "base_url": "http://x", "engine_kwargs": {"a": 1}}, "vllm"),
    ],
)
def test_missing_settings_are_named(kind, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        make_teacher(kind, Pool(), **options)


def test_engine_options_from_the_command_line_reach_the_vllm_teacher() -> None:
    import typer

    from qasynth import cli

    options = cli._engine_options(
        [
            "tensor_parallel_size=2",
            "gpu_memory_utilization=0.85",
            'limit_mm_per_prompt={"image": 20}',
            "dtype=bfloat16",
            "enforce_eager=true",
        ]
    )
    assert options == {
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.85,
        "limit_mm_per_prompt": {"image": 20},
        "dtype": "bfloat16",
        "enforce_eager": True,
    }
    with pytest.raises(typer.BadParameter, match="KEY=VALUE"):
        cli._engine_options(["tensor_parallel_size"])
    teacher = make_teacher("vllm", Pool(), model="m", engine_kwargs=options)
    assert teacher.engine_kwargs == options
    assert teacher.settings is None  # sized per job, the user's options applied on top
