"""GPU peaks by exact name, the published model presets, and FLOPs with the vision tower."""

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from seqpar_train.cli import app
from seqpar_train.flops import (
    arch_from_config,
    estimate,
    page_row,
    preset_arch,
    training_flops,
    vision_flops,
)
from seqpar_train.hardware import device_peak_tflops, lookup_gpu
from seqpar_train.presets import preset_config, preset_vision


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # names as torch.cuda.get_device_name reports them, and as users type them
        ("NVIDIA H20", "H20"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("H100 NVL", "H100 NVL"),
        ("NVIDIA H800", "H800"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe"),
        ("NVIDIA A800-SXM4-80GB", "A800"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA GB200", "GB200"),
        ("AMD Instinct MI300X", "MI300X"),
        ("h20", "H20"),
    ],
)
def test_gpu_names_match_exactly(name, expected):
    spec = lookup_gpu(name)
    assert spec is not None and spec.name == expected


def test_h200_is_not_an_h20():
    # Substring matching made "NVIDIA H200" an H20 and inflated MFU 6.7x.
    h20, h200 = lookup_gpu("NVIDIA H20"), lookup_gpu("NVIDIA H200")
    assert h20 is not None and h200 is not None
    assert (h20.peak_tflops, h20.memory_gb) == (148.0, 96)
    assert (h200.peak_tflops, h200.memory_gb) == (989.5, 141)
    assert h200.peak_tflops / h20.peak_tflops == pytest.approx(6.7, abs=0.05)


def test_dense_peaks_are_half_the_sparse_datasheet_figures():
    assert lookup_gpu("H100 SXM").peak_tflops == pytest.approx(1979 / 2, abs=0.5)  # type: ignore[union-attr]
    assert lookup_gpu("H100 PCIe").peak_tflops == pytest.approx(1513 / 2, abs=0.5)  # type: ignore[union-attr]
    assert lookup_gpu("L40S").peak_tflops == pytest.approx(733 / 2, abs=5)  # type: ignore[union-attr]
    a100_40 = lookup_gpu("NVIDIA A100-SXM4-40GB")
    assert a100_40 is not None and (a100_40.peak_tflops, a100_40.memory_gb) == (312.0, 40)


def test_unknown_device_has_no_peak_and_warns_unless_given():
    for name in ("cpu", "NVIDIA H30", "Tesla V100-SXM2-32GB", ""):
        with pytest.warns(UserWarning, match="MFU is not reported"):
            assert device_peak_tflops(name) is None
    assert device_peak_tflops("cpu", 2.5) == 2.5


def test_presets_are_the_published_configs_at_full_size():
    """Parameter counts of the published checkpoints (8,292,166,656 for Qwen2.5-VL-7B,
    8,767,123,696 for Qwen3-VL-8B, as their safetensors indexes total), on the meta device."""
    from seqpar_train.modeling import model_class

    for name, total, vision in [
        ("qwen2.5-vl-7b", 8_292_166_656, 676_550_144),
        ("qwen3-vl-8b", 8_767_123_696, 576_388_336),
    ]:
        config = preset_config(name)
        with torch.device("meta"):
            model = model_class(config)(config)
        assert sum(p.numel() for p in model.parameters()) == total
        assert sum(p.numel() for p in model.model.visual.parameters()) == vision
    # DESIGN: Qwen2.5-VL factor 28, 3136 / 12845056; Qwen3-VL factor 32, 65536 / 16777216
    assert preset_vision("qwen2.5-vl-7b").model_dump() == {
        "dpi": 144.0,
        "factor": 28,
        "min_pixels": 3136,
        "max_pixels": 12845056,
    }
    assert preset_vision("Qwen/Qwen3-VL-8B-Instruct").factor == 32
    assert preset_vision("qwen3-vl-8b").min_pixels == 65536
    with pytest.raises(ValueError, match="unknown model preset"):
        preset_config("llama-7b")


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_vision_flops_equal_torch_flop_counter(family):
    """torch's FlopCounterMode over the real vision tower (eager attention, so the score and
    value products are matmuls it counts): our forward FLOPs, windows included, are equal."""
    from longctx_rope.tiny import tiny_config
    from seqpar_train.modeling import build_model

    config = tiny_config(family)
    config._attn_implementation = "eager"
    config.vision_config._attn_implementation = "eager"
    model = build_model(config)
    vision = config.vision_config
    grids = [(1, 16, 24), (1, 8, 8), (1, 6, 10)]
    patches = sum(t * h * w for t, h, w in grids)
    pixels = torch.randn(
        patches, vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    )
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.model.visual(pixels, grid_thw=torch.tensor(grids))
    ours = vision_flops(arch_from_config(config).vision, grids)
    assert ours.causal == 3 * counter.get_total_flops()  # training = 3x forward
    if family == "qwen2.5-vl":
        # VeOmni's convention counts every block's attention over the whole image.
        assert ours.veomni > ours.causal
    else:
        assert ours.veomni == ours.causal


def test_row_flops_include_the_vision_tower_and_both_conventions():
    arch = preset_arch("qwen2.5-vl-7b")
    row = page_row(arch, seq_len=131072)
    assert row.image_grids[0] == (1, 114, 88)  # letter at 144 DPI: 1232 x 1596 px
    assert len(row.image_grids) == (131072 - 64) // 2510
    text = training_flops(arch, row.doc_lens, row.label_tokens)
    both = training_flops(arch, row.doc_lens, row.label_tokens, row.image_grids)
    assert both.vision_causal > 0 and both.causal == pytest.approx(text.causal + both.vision_causal)
    # VeOmni: 12*sum(s^2) attention (twice our causal), embedding + LM head for every token.
    attention = 12.0 * arch.layers * arch.attention_width * 131072**2
    assert text.veomni - text.causal == pytest.approx(
        attention / 2 + 6 * arch.hidden * arch.vocab * (2 * 131072 - row.label_tokens)
    )


def test_estimate_counts_trained_tokens():
    arch = preset_arch("qwen2.5-vl-7b")
    full = estimate(
        arch,
        row=page_row(arch, seq_len=131072),
        row_length=131072,
        global_batch_tokens=4 * 2**20,
        token_budget=5 * 2**30,
        gpus=64,
        peak_tflops=148,
        mfu=0.35,
    )
    assert full.steps == 1280
    filled = estimate(
        arch,
        row=page_row(arch, seq_len=int(131072 * 0.77)),
        row_length=131072,
        global_batch_tokens=4 * 2**20,
        token_budget=5 * 2**30,
        gpus=64,
        peak_tflops=148,
        mfu=0.35,
    )
    # 77% full rows: a 5B budget needs 1/0.77 as many steps.
    assert filled.steps == math.ceil(5 * 2**30 / (32 * int(131072 * 0.77)))
    assert filled.tokens_per_step < full.tokens_per_step


def test_flops_cli_takes_a_device_name():
    runner = CliRunner()
    result = runner.invoke(app, ["flops", "--gpu", "NVIDIA H200", "--row-fill", "0.77"])
    assert result.exit_code == 0, result.output
    assert "989.5" in result.output and "VeOmni" in result.output and "vision" in result.output
    unknown = runner.invoke(app, ["flops", "--gpu", "H30"])
    assert unknown.exit_code == 2 and "--peak-tflops" in unknown.output
    given = runner.invoke(app, ["flops", "--gpu", "H30", "--peak-tflops", "200"])
    assert given.exit_code == 0, given.output
