"""The GPU check's CPU-checkable parts: it refuses to run without CUDA, its model has
Qwen2.5-VL-7B's widths and ViT, its rows fill the asked length with letter pages."""

import pytest

from seqpar_train.flops import preset_arch
from seqpar_train.gpu_report import LETTER_PAGE_GRID, main, page_documents, wide_config
from seqpar_train.modeling import model_class, parameters_on_meta
from seqpar_train.presets import preset_config


def test_without_cuda_it_stops_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", "/nonexistent"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_the_model_has_the_published_widths_and_the_whole_vit() -> None:
    config = wide_config(text_layers=2)
    published = preset_config("qwen2.5-vl-7b")
    with parameters_on_meta():  # 7B widths: nothing is allocated
        model = model_class(config)(config)
        reference = model_class(published)(published)
    text = config.text_config
    preset = preset_arch("qwen2.5-vl-7b")
    assert (text.hidden_size, text.num_attention_heads, text.num_key_value_heads) == (
        preset.hidden,
        preset.heads,
        preset.kv_heads,
    )
    assert text.intermediate_size == preset.intermediate and text.vocab_size == preset.vocab
    vit = sum(p.numel() for p in model.model.visual.parameters())
    assert vit == sum(p.numel() for p in reference.model.visual.parameters())
    assert len(model.model.language_model.layers) == 2


@pytest.mark.parametrize("tokens", [32 * 1024, 64 * 1024, 128 * 1024])
def test_rows_are_letter_page_documents_filling_the_length(tokens: int) -> None:
    docs = page_documents(tokens)
    per_page = LETTER_PAGE_GRID[0] * LETTER_PAGE_GRID[1] // 4 + 2
    total = sum(prompt + len(pages) * per_page + answer for prompt, pages, answer in docs)
    assert total == tokens - tokens % len(docs)
    assert all(len(pages) >= 2 and prompt > 0 for prompt, pages, _ in docs)
