"""Activation checkpointing per decoder layer (and per vision block): only layer inputs are
kept from the forward pass; each layer is recomputed in backward."""

from __future__ import annotations

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

from seqpar_train.modeling import decoder_layers, vision_blocks


def apply_activation_checkpointing(model: torch.nn.Module, *, vision: bool = True) -> int:
    """Wrap layers in place (before FSDP, as torchtitan does); returns how many were wrapped.
    The wrapper stores the layer's kwargs too, so the Ulysses document boundaries reach the
    recomputed attention."""
    wrapped = 0
    lists = [decoder_layers(model)] + ([vision_blocks(model)] if vision else [])
    for layers in lists:
        for index, layer in enumerate(layers):
            layers[index] = checkpoint_wrapper(layer, preserve_rng_state=False)
            wrapped += 1
    return wrapped
