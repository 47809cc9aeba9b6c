"""Drop-in for ``pointnet2_ops.pointnet2_utils``: ``from cuda_ext import pointnet2_utils``.

Same names, argument orders and results as pointnet2_ops, including its FPS quirk: after the
first point, points with x^2+y^2+z^2 <= 1e-3 are never chosen (pointnet2_ops' CUDA kernel skips
them), so public code and its checkpoints see the same centres. ``cuda_ext.furthest_point_sample``
follows the plain definition instead (``skip_near_origin=False``).
"""
from typing import Optional

import torch
from torch import nn

from .grouping import ball_query, grouping_operation
from .interpolate import three_interpolate, three_nn
from .sampling import furthest_point_sample as _fps
from .sampling import gather_operation

__all__ = ["furthest_point_sample", "gather_operation", "ball_query", "grouping_operation", "three_nn",
           "three_interpolate", "QueryAndGroup", "GroupAll"]


def furthest_point_sample(xyz: torch.Tensor, npoint: int) -> torch.Tensor:
    """xyz: (B, N, 3) -> (B, npoint) int32, exactly as pointnet2_ops (near-origin points skipped)."""
    return _fps(xyz, npoint, skip_near_origin=True)


class QueryAndGroup(nn.Module):
    """Groups the points of each ball around new_xyz (pointnet2_ops ``QueryAndGroup``).

    forward(xyz (B, N, 3), new_xyz (B, npoint, 3), features (B, C, N) or None)
    -> (B, 3 + C, npoint, nsample) with use_xyz (xyz relative to the centre first), else (B, C, ...).
    """

    def __init__(self, radius: float, nsample: int, use_xyz: bool = True):
        super().__init__()
        self.radius, self.nsample, self.use_xyz = radius, nsample, use_xyz

    def forward(self, xyz: torch.Tensor, new_xyz: torch.Tensor, features: Optional[torch.Tensor] = None) -> torch.Tensor:
        idx = ball_query(self.radius, self.nsample, xyz, new_xyz)  # (B, npoint, nsample)
        grouped_xyz = grouping_operation(xyz.transpose(1, 2).contiguous(), idx)  # (B, 3, npoint, nsample)
        grouped_xyz = grouped_xyz - new_xyz.transpose(1, 2).unsqueeze(-1)
        if features is None:
            if not self.use_xyz:
                raise ValueError("QueryAndGroup: features is None and use_xyz is False: nothing to group")
            return grouped_xyz
        grouped = grouping_operation(features, idx)  # (B, C, npoint, nsample)
        return torch.cat([grouped_xyz, grouped], dim=1) if self.use_xyz else grouped

    def extra_repr(self) -> str:
        return f"radius={self.radius}, nsample={self.nsample}, use_xyz={self.use_xyz}"


class GroupAll(nn.Module):
    """Groups all points into one group (pointnet2_ops ``GroupAll``).

    forward(xyz (B, N, 3), new_xyz ignored, features (B, C, N) or None) -> (B, 3 + C, 1, N).
    """

    def __init__(self, use_xyz: bool = True):
        super().__init__()
        self.use_xyz = use_xyz

    def forward(self, xyz: torch.Tensor, new_xyz=None, features: Optional[torch.Tensor] = None) -> torch.Tensor:
        grouped_xyz = xyz.transpose(1, 2).unsqueeze(2)  # (B, 3, 1, N)
        if features is None:
            return grouped_xyz
        grouped = features.unsqueeze(2)  # (B, C, 1, N)
        return torch.cat([grouped_xyz, grouped], dim=1) if self.use_xyz else grouped
