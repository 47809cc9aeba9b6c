"""The patch stem every model shares, built in one place with the official state-dict names:
``group_divider`` (FPS + kNN patches), ``encoder`` (mini-PointNet tokens), then ``pos_embed``
(centre MLP), ``blocks`` (the transformer) and ``norm``.

Two calls, because Point-MAE / Point-BERT register their token bridge and [cls] parameters in
between: the order of registration is the order of the parameters' random initialisation and of
the state dict, both kept as in the official code.
"""
from typing import Callable, Optional

from torch import nn

from .grouping import Group
from .patch_embed import Encoder


STEM_REGIONS = {"group_divider": "patch encoder", "encoder": "patch encoder", "pos_embed": "positional embedding",
               "blocks": "transformer blocks", "norm": "transformer blocks"}  # profiler categories of the stem


def positional_mlp(trans_dim: int) -> nn.Sequential:
    """Centre coordinates (.., 3) -> positional embedding (.., trans_dim): Linear-GELU-Linear."""
    return nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, trans_dim))


def add_patch_embedding(model: nn.Module, *, encoder_dims: int, num_group: Optional[int] = None,
                        group_size: Optional[int] = None, fps_skip_near_origin: bool = True) -> None:
    """model.group_divider (when num_group is given: the pre-training encoder gets its patches from
    outside) and model.encoder, in this order."""
    if num_group is not None:
        model.group_divider = Group(num_group, group_size, skip_near_origin=fps_skip_near_origin)
    model.encoder = Encoder(encoder_dims)


def add_transformer(model: nn.Module, *, trans_dim: int, build_blocks: Callable[[], nn.Module]) -> None:
    """model.pos_embed, model.blocks = build_blocks() (called here, after pos_embed) and model.norm."""
    model.pos_embed = positional_mlp(trans_dim)
    model.blocks = build_blocks()
    model.norm = nn.LayerNorm(trans_dim)


__all__ = ["STEM_REGIONS", "add_patch_embedding", "add_transformer", "positional_mlp"]
