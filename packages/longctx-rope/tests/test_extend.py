from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer

from longctx_rope import (
    RopeSpec,
    UnsupportedArchitectureError,
    VerificationError,
    apply_rope,
    extend_checkpoint,
    loader_views,
    make_spec,
    verify,
    write_rope_config,
)
from longctx_rope.extend import extended_config, read_config, trained_context
from longctx_rope.methods import NtkBaseSpec
from longctx_rope.tiny import build_tiny_model, tiny_image

HEAD_DIM = 32


def _spec(method: str, original_base: float) -> RopeSpec:
    base = 4e6 if method == "set-base" else None
    return make_spec(
        method,
        original_base=original_base,
        original_context=32768,
        target_context=131072,
        head_dim=HEAD_DIM,
        base=base,
        round_to=1e5 if method == "ntk-base" else None,
    )


@pytest.mark.parametrize("method", ["ntk-base", "set-base", "linear", "yarn"])
def test_extend_writes_both_forms_and_loads(
    checkpoints: dict[str, Path], family: str, method: str, tmp_path: Path
) -> None:
    source = checkpoints[family]
    original = read_config(source)["text_config"]["rope_parameters"]["rope_theta"]
    spec = _spec(method, original)
    result = extend_checkpoint(source, tmp_path / "out", spec)
    text = json.loads((tmp_path / "out/config.json").read_text())["text_config"]

    assert text["rope_parameters"]["rope_theta"] == spec.base
    assert text["rope_theta"] == spec.base
    section = [4, 6, 6] if family == "qwen2.5-vl" else [6, 5, 5]
    assert text["rope_parameters"]["mrope_section"] == section
    assert text["rope_scaling"]["mrope_section"] == section
    if method in ("ntk-base", "set-base"):
        assert text["rope_parameters"]["rope_type"] == "default"
        if family == "qwen2.5-vl":
            assert text["rope_scaling"]["type"] == "mrope"
        else:
            assert text["rope_scaling"]["rope_type"] == "default"
    else:
        assert text["rope_scaling"]["type"] == method
    if family == "qwen3-vl":
        assert text["rope_parameters"]["mrope_interleaved"] is True
        assert text["rope_scaling"]["mrope_interleaved"] is True
    assert text["max_position_embeddings"] >= 131072
    assert AutoTokenizer.from_pretrained(tmp_path / "out").model_max_length == 131072

    weights = tmp_path / "out/model.safetensors"
    assert weights.is_symlink() and weights.resolve() == (source / "model.safetensors").resolve()

    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "out")
    rotary = model.model.language_model.rotary_emb
    assert torch.allclose(rotary.inv_freq, spec.inv_freq(HEAD_DIM), rtol=1e-5, atol=0)
    assert [view.loader for view in result.views] == ["transformers-5", "transformers-4", "vllm"]
    vllm = result.views[2]
    assert vllm.theta == spec.base
    assert vllm.mrope is (method != "linear")
    assert any("falls back to plain RoPE" in w for w in result.warnings) is (method == "linear")


def test_ntk_base_needs_matching_head_dim(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="head_dim 128"):
        extend_checkpoint(checkpoints["qwen2.5-vl"], tmp_path / "out", NtkBaseSpec())


def test_real_qwen25_sections(tmp_path: Path) -> None:
    """A full-size Qwen2.5-VL config (head_dim 128) keeps [16, 24, 24], legacy fields at top
    level are updated too, and NTK base 4.089e6 rounds to 4e6."""
    config = {
        "model_type": "qwen2_5_vl",
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "hidden_size": 3584,
        "num_attention_heads": 28,
        "max_position_embeddings": 128000,
        "rope_theta": 1e6,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "text_config": {
            "model_type": "qwen2_5_vl_text",
            "hidden_size": 3584,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "num_hidden_layers": 1,
            "max_position_embeddings": 128000,
            "rope_theta": 1e6,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        },
    }
    spec = make_spec(
        "ntk-base", original_base=1e6, original_context=32768, target_context=131072, base=4e6
    )
    new = extended_config(config, spec, 131072)
    for fields in (new, new["text_config"]):
        assert fields["rope_theta"] == 4e6
        assert fields["rope_scaling"] == {"type": "mrope", "mrope_section": [16, 24, 24]}
        assert fields["max_position_embeddings"] == 131072
    views = verify(new, spec)
    assert {view.theta for view in views} == {4e6}


def test_transformers5_form_alone_falls_back_in_legacy_loaders(
    checkpoints: dict[str, Path],
) -> None:
    config = read_config(checkpoints["qwen2.5-vl"])
    spec = make_spec(
        "set-base", original_base=1e6, original_context=32768, target_context=131072, base=4e6
    )
    new = extended_config(config, spec, 131072)
    for key in ("rope_theta", "rope_scaling"):
        del new["text_config"][key]
    views = {view.loader: view for view in loader_views(new)}
    assert views["transformers-5"].theta == 4e6
    assert views["transformers-4"].theta == 1e6
    assert views["vllm"].theta == 1e6
    with pytest.raises(VerificationError, match="transformers-4"):
        verify(new, spec)


def test_rerun_is_skipped_and_a_different_spec_refused(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    source = checkpoints["qwen3-vl"]
    spec = make_spec(
        "set-base", original_base=5e6, original_context=32768, target_context=131072, base=2e7
    )
    first = extend_checkpoint(source, tmp_path / "out", spec, link="copy")
    assert not first.skipped and not (tmp_path / "out/model.safetensors").is_symlink()
    assert extend_checkpoint(source, tmp_path / "out", spec).skipped
    other = make_spec(
        "set-base", original_base=5e6, original_context=32768, target_context=131072, base=4e7
    )
    with pytest.raises(FileExistsError, match="different extension"):
        extend_checkpoint(source, tmp_path / "out", other)
    assert not extend_checkpoint(source, tmp_path / "out", other, overwrite=True).skipped


def test_unknown_architecture_is_a_clear_error(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "llama"
    shutil.copytree(checkpoints["qwen2.5-vl"], source)
    config = read_config(source)
    config["model_type"] = "llama"
    config["architectures"] = ["LlamaForCausalLM"]
    (source / "config.json").write_text(json.dumps(config))
    spec = make_spec(
        "set-base", original_base=1e6, original_context=32768, target_context=131072, base=4e6
    )
    with pytest.raises(UnsupportedArchitectureError, match="'llama'.*LlamaForCausalLM.*qwen2_5_vl"):
        extend_checkpoint(source, tmp_path / "out", spec)
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="config.json"):
        extend_checkpoint(tmp_path / "missing", tmp_path / "out", spec)


@pytest.mark.parametrize("method", ["set-base", "yarn", "linear"])
def test_apply_rope_in_memory_equals_extended_checkpoint(
    checkpoints: dict[str, Path], family: str, method: str, tmp_path: Path
) -> None:
    original = read_config(checkpoints[family])["text_config"]["rope_parameters"]["rope_theta"]
    spec = _spec(method, original)
    extend_checkpoint(checkpoints[family], tmp_path / "out", spec)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "out").eval()
    model, processor = build_tiny_model(family, seed=0)
    before = model.model.visual.rotary_pos_emb.inv_freq.clone() if family == "qwen2.5-vl" else None
    apply_rope(model, spec)
    content = [{"type": "image"}, {"type": "text", "text": "Quelle page ?"}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
    batch = processor(text=[text], images=[tiny_image(120, 100)], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    if before is not None:
        assert torch.equal(model.model.visual.rotary_pos_emb.inv_freq, before)
    assert model.config.text_config.max_position_embeddings >= 131072


def test_write_rope_config_after_training_export(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """A model saved after apply_rope carries only rope_parameters; write_rope_config adds the
    legacy form in place so every loader agrees."""
    spec = make_spec(
        "set-base", original_base=1e6, original_context=32768, target_context=131072, base=4e6
    )
    model, processor = build_tiny_model("qwen2.5-vl")
    apply_rope(model, spec)
    model.save_pretrained(tmp_path / "export")
    processor.save_pretrained(tmp_path / "export")
    before = {view.loader: view.theta for view in loader_views(read_config(tmp_path / "export"))}
    assert before == {"transformers-5": 4e6, "transformers-4": 1e6, "vllm": 1e6}
    views = write_rope_config(tmp_path / "export", spec)
    assert {view.theta for view in views} == {4e6}
    assert {view.theta for view in loader_views(read_config(tmp_path / "export"))} == {4e6}
    assert AutoTokenizer.from_pretrained(tmp_path / "export").model_max_length == 131072


def test_real_qwen3_vl_interleaved_config() -> None:
    """Qwen3-VL-8B's text config (head_dim 128, interleaved [24, 20, 20], base 5e6, 256K)."""
    config = {
        "model_type": "qwen3_vl",
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "text_config": {
            "model_type": "qwen3_vl_text",
            "hidden_size": 4096,
            "head_dim": 128,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "num_hidden_layers": 1,
            "max_position_embeddings": 262144,
            "rope_theta": 5e6,
            "rope_scaling": {
                "mrope_interleaved": True,
                "mrope_section": [24, 20, 20],
                "rope_type": "default",
            },
        },
    }
    spec = make_spec("ntk-base", original_base=5e6, original_context=262144, target_context=1048576)
    new = extended_config(config, spec, spec.target_context)
    text = new["text_config"]
    assert text["rope_scaling"] == {
        "rope_type": "default",
        "mrope_section": [24, 20, 20],
        "mrope_interleaved": True,
    }
    assert text["rope_parameters"]["mrope_interleaved"] is True
    assert text["max_position_embeddings"] == 1048576
    views = verify(new, spec)
    assert {round(view.theta) for view in views} == {round(spec.base)}
    assert views[0].mrope_section == [24, 20, 20]


def test_legacy_only_checkpoint_reads_the_same_everywhere() -> None:
    """An original Qwen2.5-VL config (legacy fields only) is read alike by all three loaders."""
    config = {
        "model_type": "qwen2_5_vl",
        "hidden_size": 3584,
        "num_attention_heads": 28,
        "max_position_embeddings": 128000,
        "rope_theta": 1e6,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    }
    views = loader_views(config)
    assert [(v.theta, v.mrope, v.mrope_section) for v in views] == [(1e6, True, [16, 24, 24])] * 3
    assert trained_context(config) == 32768
