from __future__ import annotations

import random

import pytest
import torch
from transformers import PreTrainedModel, ProcessorMixin

from longctx_rope import MRopeLayout, PackedDoc, get_rope_index, packed_position_ids
from longctx_rope.tiny import special_token_id
from mmprolong_schemas import ModelFamily

START = special_token_id("<|vision_start|>")
END = special_token_id("<|vision_end|>")
IMAGE = special_token_id("<|image_pad|>")
VIDEO = special_token_id("<|video_pad|>")


def _text(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(0, 256) for _ in range(n)]


def random_sequence(
    rng: random.Random, family: str, n_images: int, n_videos: int
) -> tuple[list[int], list[list[int]], list[list[int]], list[float]]:
    """Token ids laid out as the family's processor lays them out, plus grids (in patches)."""
    ids: list[int] = _text(rng, rng.randrange(1, 6))
    images: list[list[int]] = []
    videos: list[list[int]] = []
    seconds: list[float] = []
    blocks = ["image"] * n_images + ["video"] * n_videos
    rng.shuffle(blocks)
    for kind in blocks:
        h, w = 2 * rng.randrange(1, 5), 2 * rng.randrange(1, 5)
        if kind == "image":
            images.append([1, h, w])
            ids += [START] + [IMAGE] * (h * w // 4) + [END]
        else:
            t = rng.randrange(1, 4)
            videos.append([t, h, w])
            seconds.append(rng.choice([0.5, 1.0, 1.3, 2.0]))
            if family == "qwen3-vl":
                for _ in range(t):  # "<1.5 seconds>" timestamp text before each frame
                    ids += (
                        _text(rng, rng.randrange(1, 4)) + [START] + [VIDEO] * (h * w // 4) + [END]
                    )
            else:
                ids += [START] + [VIDEO] * (t * h * w // 4) + [END]
        ids += _text(rng, rng.randrange(0, 8))
    return ids, images, videos, seconds


def _reference(
    model: PreTrainedModel,
    ids: torch.Tensor,
    images: list[list[int]],
    videos: list[list[int]],
    seconds: list[float],
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    types = torch.zeros_like(ids)
    types[ids == IMAGE] = 1
    types[ids == VIDEO] = 2
    kwargs = {}
    if seconds and model.config.model_type == "qwen2_5_vl":
        kwargs["second_per_grid_ts"] = torch.tensor(seconds)
    result: tuple[torch.Tensor, torch.Tensor] = model.model.get_rope_index(
        ids,
        mm_token_type_ids=types,
        image_grid_thw=torch.tensor(images) if images else None,
        video_grid_thw=torch.tensor(videos) if videos else None,
        attention_mask=attention_mask,
        **kwargs,
    )
    return result


@pytest.mark.parametrize("seed", range(12))
def test_matches_transformers_get_rope_index(
    tiny: tuple[PreTrainedModel, ProcessorMixin], family: str, seed: int
) -> None:
    model, _ = tiny
    rng = random.Random(seed)
    ids, images, videos, seconds = random_sequence(
        rng, family, rng.randrange(0, 6), rng.randrange(0, 3)
    )
    tensor = torch.tensor([ids])
    expected, expected_deltas = _reference(model, tensor, images, videos, seconds)
    layout = MRopeLayout.from_config(model.config)
    ours, deltas = get_rope_index(
        tensor,
        layout,
        image_grid_thw=torch.tensor(images) if images else None,
        video_grid_thw=torch.tensor(videos) if videos else None,
        second_per_grid_ts=seconds or None,
    )
    assert torch.equal(ours, expected)
    assert torch.equal(deltas, expected_deltas)


def test_padded_batch_matches_transformers(
    tiny: tuple[PreTrainedModel, ProcessorMixin], family: str
) -> None:
    model, _ = tiny
    rng = random.Random(99)
    rows = [random_sequence(rng, family, n, v) for n, v in [(3, 1), (1, 0), (0, 0), (2, 2)]]
    length = max(len(r[0]) for r in rows)
    pad = special_token_id("<|endoftext|>")
    ids = torch.tensor([[pad] * (length - len(r[0])) + r[0] for r in rows])
    mask = torch.tensor([[0] * (length - len(r[0])) + [1] * len(r[0]) for r in rows])
    images = [g for r in rows for g in r[1]]
    videos = [g for r in rows for g in r[2]]
    seconds = [s for r in rows for s in r[3]]
    expected, expected_deltas = _reference(model, ids, images, videos, seconds, mask)
    ours, deltas = get_rope_index(
        ids,
        model.config,
        image_grid_thw=torch.tensor(images),
        video_grid_thw=torch.tensor(videos),
        second_per_grid_ts=seconds,
        attention_mask=mask,
    )
    assert torch.equal(ours, expected)
    assert torch.equal(deltas, expected_deltas)


def test_processor_output_matches_transformers(
    tiny: tuple[PreTrainedModel, ProcessorMixin],
) -> None:
    from longctx_rope.tiny import tiny_image

    model, processor = tiny
    content = [{"type": "image"}, {"type": "text", "text": "entre"}, {"type": "image"}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
    images = [tiny_image(200, 120, seed=1), tiny_image(60, 300, seed=2)]
    batch = processor(text=[text], images=images, return_tensors="pt")
    expected, _ = model.model.get_rope_index(
        batch["input_ids"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        image_grid_thw=batch["image_grid_thw"],
    )
    ours, _ = get_rope_index(batch["input_ids"], model.config, batch["image_grid_thw"])
    assert torch.equal(ours, expected)


def test_image_positions_advance_by_the_longer_side() -> None:
    layout = MRopeLayout(ModelFamily.QWEN2_5_VL, image_token_id=IMAGE, video_token_id=VIDEO)
    ids = torch.tensor([7, START] + [IMAGE] * 6 + [END, 7])
    positions, delta = get_rope_index(ids, layout, image_grid_thw=torch.tensor([[1, 4, 6]]))
    t, h, w = positions[:, 0].tolist()
    assert t == [0, 1, 2, 2, 2, 2, 2, 2, 5, 6]
    assert h == [0, 1, 2, 2, 2, 3, 3, 3, 5, 6]
    assert w == [0, 1, 2, 3, 4, 2, 3, 4, 5, 6]
    assert int(delta) == 7 - 10


@pytest.mark.parametrize(
    ("grids", "message"),
    [
        ([[1, 4, 4]], "more image tokens"),
        ([[1, 4, 6], [1, 2, 2]], "describes 2 image blocks"),
        ([[1, 8, 8]], "needs 16 placeholder tokens"),
    ],
)
def test_grid_mismatches_are_clear_errors(grids: list[list[int]], message: str) -> None:
    layout = MRopeLayout(ModelFamily.QWEN2_5_VL, image_token_id=IMAGE, video_token_id=VIDEO)
    ids = torch.tensor([START] + [IMAGE] * 6 + [END])
    if message == "more image tokens":
        ids = torch.tensor([START] + [IMAGE] * 4 + [END, START] + [IMAGE] * 4 + [END])
    with pytest.raises(ValueError, match=message):
        get_rope_index(ids, layout, image_grid_thw=torch.tensor(grids))


def test_packed_rows_restart_text_positions(family: str) -> None:
    from longctx_rope.tiny import tiny_config

    config = tiny_config(family)
    rng = random.Random(5)
    docs = []
    for n in (2, 0, 1):
        ids, images, _, _ = random_sequence(rng, family, n, 0)
        docs.append(PackedDoc(torch.tensor(ids), torch.tensor(images) if images else None))
    packed = packed_position_ids(docs, config)
    assert packed.shape == (4, sum(len(d.input_ids) for d in docs))
    offset = 0
    for doc in docs:
        n = len(doc.input_ids)
        assert torch.equal(packed[0, offset : offset + n], torch.arange(n))
        alone, _ = get_rope_index(doc.input_ids, config, doc.image_grid_thw)
        assert torch.equal(packed[1:, offset : offset + n], alone[:, 0])
        offset += n


def test_packed_rejects_empty_input() -> None:
    from longctx_rope.tiny import tiny_config

    with pytest.raises(ValueError, match="at least one"):
        packed_position_ids([], tiny_config("qwen2.5-vl"))
    with pytest.raises(ValueError, match="document 0"):
        packed_position_ids([PackedDoc(torch.tensor([[1, 2]]))], tiny_config("qwen2.5-vl"))
