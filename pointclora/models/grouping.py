"""Point patches: FPS picks ``num_group`` centres, kNN gathers ``group_size`` neighbours of each,
neighbourhoods are expressed relative to their centre (official ``Group`` of Point-MAE/Point-BERT).

The point ops come from ``cuda_ext`` (compiled kernels, pure-torch reference as fallback).
"""
from typing import Tuple

import torch
from torch import nn

import cuda_ext


class Group(nn.Module):
    """FPS + kNN patch extractor (no parameters, so no state-dict keys).

    ``skip_near_origin=True`` reproduces pointnet2_ops' FPS, which never picks a point with
    x^2+y^2+z^2 <= 1e-3 after the first: the official checkpoints were trained with it, so it
    is the default to rebuild their centres exactly.
    """

    def __init__(self, num_group: int, group_size: int, skip_near_origin: bool = True):
        super().__init__()
        if num_group < 1 or group_size < 1:
            raise ValueError(f"num_group and group_size must be >= 1, got {num_group} and {group_size}")
        self.num_group = num_group
        self.group_size = group_size
        self.skip_near_origin = skip_near_origin

    def forward_with_indices(self, xyz: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """xyz: (B, N, 3) float -> neighborhood (B, G, K, 3) relative to centres, center (B, G, 3),
        center_idx (B, G) int32 (FPS indices into N), patch_idx (B, G, K) int64 (kNN indices into N)."""
        if xyz.dim() != 3 or xyz.shape[-1] != 3:
            raise ValueError(f"points must have shape (B, N, 3), got {tuple(xyz.shape)}")
        B, N, _ = xyz.shape
        if N < self.num_group or N < self.group_size:
            raise ValueError(f"points has N={N} points, fewer than num_group={self.num_group} or group_size={self.group_size}")
        xyz = xyz.contiguous()
        center_idx = cuda_ext.furthest_point_sample(xyz, self.num_group, skip_near_origin=self.skip_near_origin)  # (B, G)
        center = cuda_ext.gather_operation(xyz.transpose(1, 2).contiguous(), center_idx)  # (B, 3, G)
        center = center.transpose(1, 2).contiguous()  # (B, G, 3)
        _, patch_idx = cuda_ext.knn(xyz, center, self.group_size)  # (B, G, K) ascending distance
        flat = (patch_idx + torch.arange(B, device=xyz.device).view(B, 1, 1) * N).reshape(-1)  # (B*G*K,)
        neighborhood = xyz.reshape(B * N, 3)[flat].view(B, self.num_group, self.group_size, 3)  # (B, G, K, 3)
        return neighborhood - center.unsqueeze(2), center, center_idx, patch_idx

    def forward(self, xyz: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """xyz: (B, N, 3) -> neighborhood (B, G, K, 3) relative to centres, center (B, G, 3)."""
        neighborhood, center, _, _ = self.forward_with_indices(xyz)
        return neighborhood, center

    def extra_repr(self) -> str:
        return f"num_group={self.num_group}, group_size={self.group_size}, skip_near_origin={self.skip_near_origin}"
