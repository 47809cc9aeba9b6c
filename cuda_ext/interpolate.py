"""Three nearest neighbours and inverse-distance interpolation (pointnet2_ops semantics)."""
from typing import Tuple

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from . import _validate as V
from . import reference
from ._backend import native


class _ThreeNN(Function):
    @staticmethod
    def forward(ctx, unknown, known):
        dist2, idx = native(unknown.device).three_nn(unknown, known)
        ctx.mark_non_differentiable(dist2, idx)
        return dist2, idx

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_dist2, grad_idx):
        return None, None


def three_nn(unknown: torch.Tensor, known: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """unknown: (B, n, 3), known: (B, m, 3) with m >= 3.

    Returns dist: (B, n, 3) Euclidean distances ascending (not differentiable, as pointnet2_ops)
    and idx: (B, n, 3) int32, lowest index on ties.
    """
    unknown = V.points("unknown", unknown)
    known = V.points("known", known)
    V.same_batch_device(("unknown", "known"), unknown, known)
    V.same_dtype(("unknown", "known"), unknown, known)
    if known.shape[1] < 3:
        raise ValueError(f"known must have at least 3 points, got shape {tuple(known.shape)}")
    if native(unknown.device) is None:
        dist, idx = reference.three_nn(unknown, known)
        return dist.detach(), idx
    dist2, idx = _ThreeNN.apply(unknown, known)
    return torch.sqrt(dist2), idx


class _ThreeInterpolate(Function):
    @staticmethod
    def forward(ctx, features, idx, weight):
        ctx.save_for_backward(idx, weight)
        ctx.m = features.shape[2]
        return native(features.device).three_interpolate_forward(features, idx, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        idx, weight = ctx.saved_tensors
        grad = native(grad_out.device).three_interpolate_backward(grad_out.contiguous(), idx, weight, ctx.m)
        return grad, None, None


def three_interpolate(features: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """features: (B, C, m), idx: (B, n, 3) int in [0, m), weight: (B, n, 3) -> (B, C, n).

    out[b, c, i] = sum_j weight[b, i, j] * features[b, c, idx[b, i, j]]; differentiable in
    ``features`` (not in ``weight``, as pointnet2_ops).
    """
    features = V.floating("features", V.tensor("features", features, 3), half_on_cuda=False)
    idx = V.index("idx", idx, 3)
    weight = V.floating("weight", V.tensor("weight", weight, 3), half_on_cuda=False)
    V.same_batch_device(("features", "idx", "weight"), features, idx, weight)
    V.same_dtype(("features", "weight"), features, weight)
    if idx.shape[2] != 3 or weight.shape != idx.shape:
        raise ValueError(f"idx and weight must both be (B, n, 3), got {tuple(idx.shape)} and {tuple(weight.shape)}")
    if native(features.device) is None:
        return reference.three_interpolate(features, idx, weight.detach())
    return _ThreeInterpolate.apply(features, idx, weight)
