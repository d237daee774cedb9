"""Export to HF safetensors: reloads in transformers with the extended rope and same logits."""

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText

from seqpar_train.checkpoint import latest_checkpoint, load_model_weights
from seqpar_train.config import load_config
from seqpar_train.export import export_hf
from seqpar_train.forward import PackedLossModel
from seqpar_train.synthetic import MULTI_IMAGE_DOCS, synthetic_row
from seqpar_train.trainer import build_training_model, train

ROPE = (
    'model.rope={"method": "ntk-base", "original_base": 1e6, "base": 4e6, '
    '"original_context": 32768, "target_context": 131072}'
)


@pytest.mark.slow
def test_export_reloads_with_extended_rope_and_same_logits(tmp_path):
    config = load_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            "model.tiny=qwen2.5-vl",
            ROPE,
            "max_length=256",
            "global_batch_tokens=256",
            "max_steps=2",
            "parallel.param_dtype=float32",
            "data.num_workers=0",
            "data.synthetic.docs_per_row=2",
            "data.synthetic.prompt_tokens=16",
        ],
    )
    train(config)
    out = export_hf(config, tmp_path / "hf", dtype=torch.float32)
    saved = json.loads((out / "config.json").read_text())
    assert saved["text_config"]["rope_parameters"]["rope_theta"] == 4e6
    assert saved["text_config"]["rope_scaling"]["type"] == "mrope"  # the 4.x / vLLM form
    assert any(out.glob("*.safetensors"))

    trained = build_training_model(config, torch.device("cpu"))
    load_model_weights(
        latest_checkpoint(tmp_path / "run" / "checkpoints"), PackedLossModel(trained)
    )
    reloaded = AutoModelForImageTextToText.from_pretrained(out)
    row = synthetic_row(trained.config, MULTI_IMAGE_DOCS, seed=4)
    inputs = {
        "input_ids": row.input_ids[None],
        "position_ids": row.position_ids[:, None],
        "pixel_values": row.pixel_values,
        "image_grid_thw": row.image_grid_thw,
        "use_cache": False,
    }
    trained.config.text_config._attn_implementation = "sdpa"
    with torch.no_grad():
        want = trained(**inputs).logits
        got = reloaded(**inputs).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(FileExistsError):
        export_hf(config, out)
