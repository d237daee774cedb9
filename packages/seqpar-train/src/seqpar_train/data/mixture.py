"""Rows packed from a qasynth mixture: plan by exact lengths, build lazily in workers.

The mixture's samples are shuffled per epoch (seeded); every ``pack_window`` consecutive
samples are packed into rows of ``max_length`` tokens, and the window's rows are shuffled
(seeded) so training does not see them longest-first. ``fill="whole"`` packs whole samples
first-fit-decreasing; ``fill="cut"`` fills rows by cutting documents after the pages their
questions depend on (``pack_cut``; a cut keeps at least ``min_keep`` of a sample). Planning
needs only page sizes, so every rank plans the same rows; building a row renders its pages.
The global row index is the resumable cursor. A sample whose document is missing, whose PDF
is broken or that is longer than a row is skipped with a warning and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from mmprolong_schemas import Sample, read_parquet
from seqpar_train.batch import IGNORE_INDEX, PackedRow, mask_documents
from seqpar_train.config import TrainerConfig
from seqpar_train.data.encode import EncodedSample, SampleEncoder, SampleError
from seqpar_train.data.packing import pack_cut, pack_ffd

log = logging.getLogger("seqpar_train.data")


class Member(NamedTuple):
    """A sample of a planned row: whole, or with its document cut after ``cut_page``."""

    sample: int
    cut_page: int | None
    tokens: int
    left_out: int = 0  # tokens the cut leaves out


def read_mixture(mixture_dir: str | Path) -> list[Sample]:
    shards = sorted(Path(mixture_dir).glob("samples-*.parquet"))
    if not shards:
        raise FileNotFoundError(f"{mixture_dir} holds no samples-*.parquet mixture shards")
    return [sample for shard in shards for sample in read_parquet(shard, Sample)]


class MixtureRows:
    def __init__(
        self,
        samples: list[Sample],
        encoder: SampleEncoder,
        model_config: Any,
        *,
        max_length: int,
        window: int,
        seed: int,
        fill: Literal["whole", "cut"] = "whole",
        min_keep: float = 0.5,
    ) -> None:
        if not samples:
            raise ValueError("the mixture is empty")
        self.samples = samples
        self.encoder = encoder
        self.model_config = model_config
        self.max_length = max_length
        self.window = window
        self.seed = seed
        self.fill = fill
        self.min_keep = min_keep
        self._plans: list[tuple[list[Member], list[str]]] = []  # (members, skip reasons)
        self._next_window = 0

    @classmethod
    def from_config(cls, config: TrainerConfig, model_config: Any) -> MixtureRows:
        assert config.data.mixture is not None and config.data.pool is not None
        return cls(
            read_mixture(config.data.mixture),
            SampleEncoder(
                load_processor(config),
                config.data.vision,
                config.data.pool,
                Path(config.data.image_root) if config.data.image_root else None,
            ),
            model_config,
            max_length=config.max_length,
            window=config.data.pack_window,
            seed=config.seed,
            fill=config.data.fill,
            min_keep=config.data.min_keep,
        )

    def _window_samples(self, window: int) -> list[int]:
        per_epoch = -(-len(self.samples) // self.window)
        epoch, index = divmod(window, per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.samples))
        return [int(i) for i in order[index * self.window : (index + 1) * self.window]]

    def _plan_window(self) -> None:
        members = self._window_samples(self._next_window)
        self._next_window += 1
        lengths, cuts, kept, reasons = [], [], [], []
        for index in members:
            sample = self.samples[index]
            try:
                length, cut = self.encoder.length_and_cuts(sample, cuts=self.fill == "cut")
            except SampleError as error:
                reasons.append(f"sample {sample.sample_id}: {error}")
                continue
            if length > self.max_length:
                reasons.append(
                    f"sample {sample.sample_id} has {length} tokens, more than a row "
                    f"({self.max_length})"
                )
                continue
            lengths.append(length)
            cuts.append(cut)
            kept.append(index)
        if self.fill == "cut":
            placed = pack_cut(
                lengths, [[n for _, n in c] for c in cuts], self.max_length, min_keep=self.min_keep
            )
            rows = [
                [
                    Member(kept[i], None, lengths[i])
                    if c is None
                    else self._checked_cut(kept[i], *cuts[i][c], lengths[i])
                    for i, c in row
                ]
                for row in placed
            ]
        else:
            rows = [
                [Member(kept[i], None, lengths[i]) for i in row]
                for row in pack_ffd(lengths, self.max_length)
            ]
        # Packers put the longest samples first; a big window would train longest-first for
        # many steps. The shuffle depends only on (seed, window), so resuming replans alike.
        shuffle = np.random.default_rng([self.seed, 1, self._next_window - 1])
        plans: list[tuple[list[Member], list[str]]] = [
            (rows[i], []) for i in shuffle.permutation(len(rows))
        ]
        if not plans:
            plans = [([], [])]
        plans[0] = (plans[0][0], reasons)  # planning skips are reported once, with the first row
        self._plans.extend(plans)

    def _checked_cut(self, index: int, page: int, tokens: int, whole: int) -> Member:
        """The planned cut, checked against an exact count of the cut sample: a chat
        template that does not render each image on its own would break the plan."""
        exact = self.encoder.length(self.samples[index].cut(page, tokens))
        if exact != tokens:
            raise ValueError(
                f"sample {self.samples[index].sample_id} cut after page {page} has {exact} "
                f"tokens, {tokens} planned: this chat template does not render images "
                "independently; use data.fill='whole'"
            )
        return Member(index, page, tokens, whole - tokens)

    def _sample(self, member: Member) -> Sample:
        sample = self.samples[member.sample]
        return sample if member.cut_page is None else sample.cut(member.cut_page, member.tokens)

    def plan(self, index: int) -> tuple[list[Member], list[str]]:
        while len(self._plans) <= index:
            self._plan_window()
        return self._plans[index]

    def row_tokens(self, index: int) -> int:
        return sum(member.tokens for member in self.plan(index)[0])

    def row(self, index: int, sp_rank: int = 0, sp: int = 1) -> tuple[PackedRow, list[str]]:
        """Row ``index`` and the reasons of samples skipped while building it. With ``sp`` > 1
        only the images SP rank ``sp_rank`` encodes are rendered (see ``_share_row``)."""
        if sp > 1:
            return self._share_row(index, sp_rank, sp)
        members, planning_skips = self.plan(index)
        reasons = list(planning_skips)
        encoded: list[EncodedSample] = []
        ids: list[str] = []
        left_out = 0
        for member in members:
            sample = self._sample(member)
            try:
                encoded.append(self.encoder.encode(sample))
                ids.append(sample.sample_id)
                left_out += member.left_out
            except SampleError as error:
                reasons.append(str(error))
        for reason in reasons:
            log.warning("skipped: %s", reason)
        return self._pack(encoded, ids, left_out=left_out), reasons

    def _share_row(self, index: int, sp_rank: int, sp: int) -> tuple[PackedRow, list[str]]:
        """The row with pixels for SP rank ``sp_rank``'s images only.

        Tokens and image grids come from page sizes (``SampleEncoder.plan``), so every rank
        of the group builds the same ids, positions and grids and the same image->rank
        assignment as the vision tower, and renders only the pages it will encode. A sample
        whose pages this rank cannot render stays in the row with zero pixels and is listed
        in ``failed_docs``: the trainer masks its labels on every rank of the group (the
        other ranks never rendered it, so they cannot know), which keeps the group's rows
        identical in shape and the collectives in step.
        """
        from seqpar_train.vision import image_owners

        members, planning_skips = self.plan(index)
        reasons = list(planning_skips)
        samples, planned = [], []
        left_out = 0
        for member in members:
            sample = self._sample(member)
            try:
                planned.append(self.encoder.plan(sample))
                samples.append(sample)
                left_out += member.left_out
            except SampleError as error:
                # Planning renders nothing, so every rank of the group drops the same samples.
                reasons.append(str(error))
        grids = [p.image_grid_thw for p in planned if p.image_grid_thw is not None]
        all_grids = torch.cat(grids) if grids else None
        patches = [] if all_grids is None else [int(n) for n in all_grids.prod(-1)]
        owner = image_owners(all_grids, sp)  # the vision tower's assignment, before rendering
        pixels, failed, first_image = [], [], 0
        for doc, (sample, plan) in enumerate(zip(samples, planned, strict=True)):
            count = 0 if plan.image_grid_thw is None else int(plan.image_grid_thw.shape[0])
            wanted = [o == sp_rank for o in owner[first_image : first_image + count]]
            mine = [int(n) for n, w in zip(patches[first_image:], wanted, strict=False) if w]
            first_image += count
            try:
                values = self.encoder.pixels(sample, wanted, plan) if count else None
            except SampleError as error:
                reasons.append(str(error))
                failed.append(doc)
                values = torch.zeros((sum(mine), self.encoder.patch_dim)) if mine else None
            if values is not None:
                pixels.append(values)
        for reason in reasons:
            log.warning("skipped: %s", reason)
        encoded = [EncodedSample(p.input_ids, p.labels, None, p.image_grid_thw) for p in planned]
        row = self._pack(
            encoded,
            [s.sample_id for s in samples],
            pixel_share=(sp_rank, sp),
            pixels=pixels,
            left_out=left_out,
        )
        return mask_documents(row, failed), reasons

    def _pack(
        self,
        encoded: list[EncodedSample],
        ids: list[str],
        *,
        pixel_share: tuple[int, int] | None = None,
        pixels: list[torch.Tensor] | None = None,
        left_out: int = 0,
    ) -> PackedRow:
        """One row of the encoded samples; ``pixels`` (this rank's share, with
        ``pixel_share``) replaces the samples' own pixel_values."""
        from longctx_rope import PackedDoc, packed_position_ids

        if not encoded:
            # Every sample of the row failed: one token without a label keeps all ranks in
            # step (every collective still runs) and adds nothing to the loss.
            one = torch.zeros(1, dtype=torch.long)
            return PackedRow(
                one, torch.full_like(one, IGNORE_INDEX), torch.zeros(4, 1, dtype=torch.long), [1]
            )
        docs = [PackedDoc(e.input_ids, e.image_grid_thw) for e in encoded]
        if pixels is None:
            pixels = [e.pixel_values for e in encoded if e.pixel_values is not None]
        grids = [e.image_grid_thw for e in encoded if e.image_grid_thw is not None]
        return PackedRow(
            input_ids=torch.cat([e.input_ids for e in encoded]),
            labels=torch.cat([e.labels for e in encoded]),
            position_ids=packed_position_ids(docs, self.model_config),
            doc_lens=[int(e.input_ids.numel()) for e in encoded],
            pixel_values=torch.cat(pixels) if pixels else None,
            image_grid_thw=torch.cat(grids) if grids else None,
            sample_ids=ids,
            pixel_share=pixel_share,
            left_out_tokens=left_out,
        )


def load_processor(config: TrainerConfig) -> Any:
    """The model's processor: the checkpoint's own, or the tiny one of the tiny family."""
    if config.model.tiny is not None:
        from longctx_rope.tiny import tiny_processor

        vision = config.data.vision
        return tiny_processor(config.model.tiny, vision.min_pixels, vision.max_pixels)
    from longctx_rope import load_processor as load_checkpoint_processor

    assert config.model.path is not None
    return load_checkpoint_processor(config.model.path)
