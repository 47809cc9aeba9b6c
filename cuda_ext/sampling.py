"""Furthest point sampling and gather_operation (pointnet2_ops semantics)."""
import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from . import _validate as V
from . import reference
from ._backend import native
from ._gather import feature_gather_function, gather_features


class _FurthestPointSample(Function):
    @staticmethod
    def forward(ctx, xyz, npoint, skip_near_origin):
        idx = native(xyz.device).furthest_point_sample(xyz, npoint, skip_near_origin)
        ctx.mark_non_differentiable(idx)
        return idx

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_idx):
        return None, None, None


def furthest_point_sample(xyz: torch.Tensor, npoint: int, skip_near_origin: bool = False) -> torch.Tensor:
    """Furthest point sampling.

    xyz: (B, N, 3) float (float16/bfloat16 on CUDA too); npoint in [1, N].
    Returns idx: (B, npoint) int32. Starts at index 0; each next index is the point with the
    largest squared distance to the chosen set, lowest index on ties. With
    ``skip_near_origin`` points with x^2+y^2+z^2 <= 1e-3 are never chosen after the first, as
    pointnet2_ops' CUDA kernel does (``cuda_ext.pointnet2_utils`` turns it on).
    """
    xyz = V.points("xyz", xyz, half_on_cuda=True)
    V.count("npoint", npoint, 1, xyz.shape[1], f"N = {xyz.shape[1]} points in xyz")
    if native(xyz.device) is None:
        return reference.furthest_point_sample(xyz, npoint, bool(skip_near_origin))
    return _FurthestPointSample.apply(xyz, npoint, bool(skip_near_origin))


_GatherOperation = feature_gather_function("gather_forward", "gather_backward", "_GatherOperation")


def gather_operation(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """features: (B, C, N) float, idx: (B, M) int in [0, N) -> (B, C, M) = features[b, :, idx[b, m]].

    Differentiable in ``features``.
    """
    return gather_features(features, idx, 2, _GatherOperation, reference.gather_operation)
