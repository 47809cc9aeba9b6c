"""Ball query and grouping_operation (pointnet2_ops semantics)."""
import torch

from . import _validate as V
from . import reference
from ._backend import native
from ._gather import feature_gather_function, gather_features


def ball_query(radius: float, nsample: int, xyz: torch.Tensor, new_xyz: torch.Tensor) -> torch.Tensor:
    """xyz: (B, N, 3) points, new_xyz: (B, M, 3) centres -> idx: (B, M, nsample) int32.

    pointnet2_ops semantics: the first ``nsample`` point indices (in index order) with squared
    distance < radius^2; the remaining slots repeat the first found index; a ball with no point
    gives all zeros (index 0, as pointnet2_ops: mask such balls yourself if it matters).
    """
    xyz = V.points("xyz", xyz)
    new_xyz = V.points("new_xyz", new_xyz)
    V.same_batch_device(("xyz", "new_xyz"), xyz, new_xyz)
    V.same_dtype(("xyz", "new_xyz"), xyz, new_xyz)
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not radius > 0:
        raise ValueError(f"radius must be a positive number, got {radius!r}")
    V.count("nsample", nsample, 1, 2**31 - 1, "slots per ball")
    C = native(xyz.device)
    if C is None:
        return reference.ball_query(float(radius), nsample, xyz, new_xyz)
    return C.ball_query(new_xyz, xyz, float(radius), nsample)


_GroupingOperation = feature_gather_function("group_forward", "group_backward", "_GroupingOperation")


def grouping_operation(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """features: (B, C, N) float, idx: (B, M, K) int in [0, N) -> (B, C, M, K).

    out[b, c, m, k] = features[b, c, idx[b, m, k]]; differentiable in ``features``.
    """
    return gather_features(features, idx, 3, _GroupingOperation, reference.grouping_operation)
