"""Chamfer distance with gradients to both clouds (the Point-MAE pretraining loss)."""
from typing import Tuple

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from . import _validate as V
from . import reference
from ._backend import native


class _ChamferDistance(Function):
    @staticmethod
    def forward(ctx, xyz1, xyz2):
        dist1, dist2, idx1, idx2 = native(xyz1.device).chamfer_forward(xyz1, xyz2)
        ctx.save_for_backward(xyz1, xyz2, idx1, idx2)
        ctx.mark_non_differentiable(idx1, idx2)
        return dist1, dist2, idx1, idx2

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_dist1, grad_dist2, grad_idx1, grad_idx2):
        xyz1, xyz2, idx1, idx2 = ctx.saved_tensors
        return native(xyz1.device).chamfer_backward(
            xyz1, xyz2, idx1, idx2, grad_dist1.contiguous(), grad_dist2.contiguous()
        )


def chamfer_distance(xyz1: torch.Tensor, xyz2: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """xyz1: (B, N, 3), xyz2: (B, M, 3), same float dtype.

    Returns dist1: (B, N) squared distance from each xyz1 point to its nearest xyz2 point,
    dist2: (B, M) the converse, idx1: (B, N) and idx2: (B, M) int32 (lowest index on ties).
    dist1 and dist2 are differentiable in both inputs. The Point-MAE L2 Chamfer loss is
    ``dist1.mean() + dist2.mean()``; the L1 variant averages their square roots.
    """
    xyz1 = V.points("xyz1", xyz1)
    xyz2 = V.points("xyz2", xyz2)
    V.same_batch_device(("xyz1", "xyz2"), xyz1, xyz2)
    V.same_dtype(("xyz1", "xyz2"), xyz1, xyz2)
    if xyz1.shape[1] == 0 or xyz2.shape[1] == 0:
        raise ValueError(f"xyz1 and xyz2 need at least one point each, got {tuple(xyz1.shape)} and {tuple(xyz2.shape)}")
    if native(xyz1.device) is None:
        return reference.chamfer_distance(xyz1, xyz2)
    return _ChamferDistance.apply(xyz1, xyz2)
