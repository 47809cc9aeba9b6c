"""k nearest neighbours, plus `KNN`, a drop-in for KNN_CUDA's module."""
from typing import Tuple

import torch
from torch import nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from . import _validate as V
from . import reference
from ._backend import native


class _Knn(Function):
    @staticmethod
    def forward(ctx, ref, query, k):
        dist2, idx = native(ref.device).knn(ref, query, k)
        ctx.mark_non_differentiable(dist2, idx)
        return dist2, idx

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_dist2, grad_idx):
        return None, None, None


def knn(ref: torch.Tensor, query: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """ref: (B, N, 3) points, query: (B, M, 3) queries, k in [1, N].

    Returns dist: (B, M, k) Euclidean distances ascending (not differentiable) and
    idx: (B, M, k) int64 0-based indices into ref, lowest index on ties.
    """
    ref = V.points("ref", ref, half_on_cuda=True)
    query = V.points("query", query, half_on_cuda=True)
    V.same_batch_device(("ref", "query"), ref, query)
    V.same_dtype(("ref", "query"), ref, query)
    V.count("k", k, 1, ref.shape[1], f"N = {ref.shape[1]} points in ref")
    if native(ref.device) is None:
        dist, idx = reference.knn(ref, query, k)
        return dist.detach(), idx
    dist2, idx = _Knn.apply(ref, query, k)
    return torch.sqrt(dist2), idx


class KNN(nn.Module):
    """Drop-in for ``knn_cuda.KNN`` (KNN_CUDA), same call convention and shapes.

    ``KNN(k, transpose_mode=False)(ref, query)``:
      transpose_mode=True:  ref (B, N, D), query (B, M, D) -> dist, idx (B, M, k)
      transpose_mode=False: ref (B, D, N), query (B, D, M) -> dist, idx (B, k, M)
    D must be 3 here. dist is Euclidean (KNN_CUDA takes the square root too), idx int64
    0-based; no gradient, as KNN_CUDA runs under ``torch.no_grad()``.
    """

    def __init__(self, k: int, transpose_mode: bool = False):
        super().__init__()
        self.k = k
        self.transpose_mode = transpose_mode

    def forward(self, ref: torch.Tensor, query: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        V.tensor("ref", ref, 3)
        V.tensor("query", query, 3)
        if not self.transpose_mode:
            ref, query = ref.transpose(1, 2), query.transpose(1, 2)  # (B, N, 3), (B, M, 3)
        with torch.no_grad():
            dist, idx = knn(ref, query, self.k)  # (B, M, k)
        if not self.transpose_mode:
            dist, idx = dist.transpose(1, 2).contiguous(), idx.transpose(1, 2).contiguous()  # (B, k, M)
        return dist, idx

    def extra_repr(self) -> str:
        return f"k={self.k}, transpose_mode={self.transpose_mode}"
