"""Point-MAE part segmentation model (official ``get_model`` of segmentation/models/pt.py).

points (B, N, 3) -> patches -> tokens (no cls token) -> the outputs of three blocks (3, 7, 11 at
depth 12), each through the final LayerNorm, concatenated to 3C per centre -> global max and mean
(2 x 3C) + the object category one-hot through Conv1d(16,64)-BN-LeakyReLU(0.2) -> features
propagated from the G centres to all N points (inverse squared-distance 3-NN interpolation, via
``cuda_ext.three_nn`` / ``three_interpolate``) -> per-point head -> part logits (B, N, cls_dim).
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import cuda_ext

from .base import FrozenBNMixin
from .layers import TransformerEncoder, drop_path_schedule, trunc_normal_init_weights
from .stem import STEM_REGIONS, add_patch_embedding, add_transformer

PROPAGATION_DIM = 1024  # official propagation_0 output width (mlp=[4C, 1024])


class PointNetFeaturePropagation(nn.Module):
    """Interpolate features of S known points onto N points, concat the N points' own features,
    then Conv1d-BN-ReLU layers (keys ``mlp_convs.{i}``, ``mlp_bns.{i}`` as PointNet++)."""

    def __init__(self, in_channel: int, mlp: Sequence[int]):
        super().__init__()
        self.mlp_convs = nn.ModuleList()
        self.mlp_bns = nn.ModuleList()
        last = in_channel
        for out in mlp:
            self.mlp_convs.append(nn.Conv1d(last, out, 1))
            self.mlp_bns.append(nn.BatchNorm1d(out))
            last = out

    def forward(self, xyz1: torch.Tensor, xyz2: torch.Tensor, points1: torch.Tensor, points2: torch.Tensor) -> torch.Tensor:
        """xyz1: (B, N, 3) targets, xyz2: (B, S, 3) known, points1: (B, D1, N), points2: (B, D2, S)
        -> (B, mlp[-1], N)."""
        dist, idx = cuda_ext.three_nn(xyz1.contiguous(), xyz2.contiguous())  # (B, N, 3) Euclidean
        recip = 1.0 / (dist * dist + 1e-8)  # official weights use squared distances
        weight = recip / recip.sum(dim=2, keepdim=True)  # (B, N, 3)
        interpolated = cuda_ext.three_interpolate(points2.contiguous(), idx, weight)  # (B, D2, N)
        x = torch.cat([points1, interpolated], dim=1)  # (B, D1 + D2, N)
        for conv, bn in zip(self.mlp_convs, self.mlp_bns):
            x = F.relu(bn(conv(x)))
        return x


def default_fetch_idx(depth: int) -> list:
    """Blocks whose outputs feed the head: [3, 7, 11] at depth 12, the same thirds otherwise."""
    if depth < 3:
        raise ValueError(f"part segmentation needs depth >= 3 (three fetched blocks), got depth={depth}")
    return [depth // 3 - 1, 2 * depth // 3 - 1, depth - 1]


class PointMAEPartSeg(FrozenBNMixin, nn.Module):
    """Point-MAE part segmentation: ``forward(points, category) -> logits (B, N, cls_dim)``."""

    TASK = "part_segmentation"
    HEAD_MODULES = ("label_conv", "propagation_0", "convs1", "convs2", "convs3", "bns1", "bns2")
    REGIONS = {**STEM_REGIONS, **{name: "head" for name in HEAD_MODULES + ("dp1", "relu")}}

    # the backbone keys (Point-MAE's, read by build_model and the config schema), then the head's
    def __init__(self, *, trans_dim: int, depth: int, drop_path_rate: float, cls_dim: int, num_heads: int,
                 group_size: int, num_group: int, encoder_dims: int, fps_skip_near_origin: bool = True,
                 attention: str = "explicit", num_categories: int = 16, fetch_idx: Optional[Sequence[int]] = None):
        super().__init__()
        if encoder_dims != trans_dim:
            raise ValueError(f"PointMAEPartSeg needs encoder_dims == trans_dim, got {encoder_dims} and {trans_dim}")
        if num_group < 3:
            raise ValueError(f"num_group must be >= 3 for 3-NN feature propagation, got {num_group}")
        self.fetch_idx = list(fetch_idx) if fetch_idx is not None else default_fetch_idx(depth)
        if len(self.fetch_idx) != 3 or len(set(self.fetch_idx)) != 3 or not all(0 <= i < depth for i in self.fetch_idx):
            raise ValueError(f"fetch_idx must be 3 distinct block indices in [0, {depth}), got {self.fetch_idx}")
        self.trans_dim = trans_dim
        self.cls_dim = cls_dim
        self.num_categories = num_categories
        add_patch_embedding(self, encoder_dims=encoder_dims, num_group=num_group, group_size=group_size,
                            fps_skip_near_origin=fps_skip_near_origin)
        add_transformer(self, trans_dim=trans_dim, build_blocks=lambda: TransformerEncoder(
            trans_dim, depth, num_heads, drop_path_schedule(drop_path_rate, depth), attention))
        self.label_conv = nn.Sequential(
            nn.Conv1d(num_categories, 64, kernel_size=1, bias=False), nn.BatchNorm1d(64), nn.LeakyReLU(0.2)
        )
        self.propagation_0 = PointNetFeaturePropagation(3 * trans_dim + 3, [4 * trans_dim, PROPAGATION_DIM])
        self.convs1 = nn.Conv1d(PROPAGATION_DIM + 6 * trans_dim + 64, 512, 1)  # 3392 at trans_dim 384
        self.dp1 = nn.Dropout(0.5)
        self.convs2 = nn.Conv1d(512, 256, 1)
        self.convs3 = nn.Conv1d(256, cls_dim, 1)
        self.bns1 = nn.BatchNorm1d(512)
        self.bns2 = nn.BatchNorm1d(256)
        self.relu = nn.ReLU()  # official get_model keeps PyTorch's default init

    def _global_features(self, points: torch.Tensor):
        """points: (B, N, 3) -> per-centre features (B, 3C, G) and centres (B, G, 3)."""
        neighborhood, center = self.group_divider(points)  # (B, G, K, 3), (B, G, 3)
        x = self.encoder(neighborhood)  # (B, G, C)
        feats = self.blocks.forward_intermediate(x, self.pos_embed(center), self.fetch_idx)
        feats = [self.norm(f).transpose(1, 2) for f in feats]  # 3 x (B, C, G)
        return torch.cat(feats, dim=1), center  # (B, 3C, G)

    def _category_one_hot(self, category: torch.Tensor, batch: int) -> torch.Tensor:
        if category.shape != (batch,) or category.dtype.is_floating_point or category.dtype.is_complex:
            raise ValueError(f"category must be (B,) = ({batch},) integer labels, got {tuple(category.shape)} {category.dtype}")
        # the range check reads the values on the host: on CUDA it would stall every training step,
        # so there (as torch's one_hot does) an out-of-range label fails in a device-side assert
        if not category.is_cuda and ((category < 0) | (category >= self.num_categories)).any():
            raise ValueError(f"category labels must be in [0, {self.num_categories}), got {category.tolist()}")
        return F.one_hot(category.long(), self.num_categories).float().unsqueeze(-1)  # (B, 16, 1)

    def forward_features(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """points: (B, N, 3), category: (B,) int64 -> per-point features (B, 1024 + 6C + 64, N)."""
        B, N, _ = points.shape
        x, center = self._global_features(points)  # (B, 3C, G)
        global_max = x.max(dim=2, keepdim=True)[0].expand(-1, -1, N)  # (B, 3C, N)
        global_avg = x.mean(dim=2, keepdim=True).expand(-1, -1, N)  # (B, 3C, N)
        label = self.label_conv(self._category_one_hot(category, B).to(x.dtype)).expand(-1, -1, N)  # (B, 64, N)
        local = self.propagation_0(points, center, points.transpose(1, 2), x)  # (B, 1024, N)
        return torch.cat([local, global_max, global_avg, label], dim=1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, D, N) -> raw part logits (B, N, cls_dim) (official returns log_softmax)."""
        x = self.dp1(self.relu(self.bns1(self.convs1(features))))
        x = self.relu(self.bns2(self.convs2(x)))
        return self.convs3(x).transpose(1, 2)

    def forward(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """points: (B, N, 3) float, category: (B,) int64 object class -> logits (B, N, cls_dim)."""
        return self.forward_head(self.forward_features(points, category))

    def reset_head(self, num_classes: int) -> None:
        """Replace the last per-point layer by a fresh one with ``num_classes`` part outputs."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        old = self.convs3
        self.convs3 = nn.Conv1d(old.in_channels, num_classes, 1).to(device=old.weight.device, dtype=old.weight.dtype)
        trunc_normal_init_weights(self.convs3)
        self.cls_dim = num_classes

    def loss(self, logits: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """logits: (B, N, P), seg: (B, N) int -> scalar cross-entropy (= official nll of log_softmax)."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seg.reshape(-1).long())
