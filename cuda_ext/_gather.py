"""What gather_operation (sampling.py) and grouping_operation (grouping.py) share: features (B, C, N)
gathered at int indices along N by a native op pair, or by the reference when _C cannot run."""
from typing import Callable

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from . import _validate as V
from ._backend import native


def feature_gather_function(forward_op: str, backward_op: str, name: str) -> type:
    """The autograd Function `name` of the native ops ``forward_op(features, idx)`` and
    ``backward_op(grad_out, idx, N)`` (the scatter-add of the gradient); differentiable in features."""

    class FeatureGather(Function):
        @staticmethod
        def forward(ctx, features, idx):
            ctx.save_for_backward(idx)
            ctx.n = features.shape[2]
            return getattr(native(features.device), forward_op)(features, idx)

        @staticmethod
        @once_differentiable
        def backward(ctx, grad_out):
            (idx,) = ctx.saved_tensors
            return getattr(native(grad_out.device), backward_op)(grad_out.contiguous(), idx, ctx.n), None

    FeatureGather.__name__ = FeatureGather.__qualname__ = name
    return FeatureGather


def gather_features(features: torch.Tensor, idx: torch.Tensor, idx_dims: int, function: type,
                    fallback: Callable) -> torch.Tensor:
    """features: (B, C, N) float, idx: (B, M) or (B, M, K) int (`idx_dims` axes), both checked (ValueError
    naming the argument) -> `function` applied natively, or `fallback` (the reference) where _C cannot run."""
    features = V.floating("features", V.tensor("features", features, 3), half_on_cuda=True)
    idx = V.index("idx", idx, idx_dims)
    V.same_batch_device(("features", "idx"), features, idx)
    if native(features.device) is None:
        return fallback(features, idx)
    return function.apply(features, idx)
