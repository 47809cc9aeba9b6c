"""Pure-torch reference implementations of every point op.

These are the definitions the native kernels are tested against: slow, obvious,
and written so that index outputs are bit-for-bit reproducible (squared
distances are always summed in the order dx*dx + dy*dy + dz*dz, ties are broken
towards the lowest index).
"""
import torch


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a: (B, N, 3), b: (B, M, 3) -> (B, N, M) squared Euclidean distances.

    Summed as dx*dx + dy*dy + dz*dz (never via |a|^2 - 2ab + |b|^2) so that the
    native kernels can reproduce every bit and tie-breaking is exact.
    """
    diff = a.unsqueeze(2) - b.unsqueeze(1)  # (B, N, M, 3)
    return diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1] + diff[..., 2] * diff[..., 2]


def _accumulate(xyz: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32, as the CUDA kernels accumulate distances (at::acc_type)."""
    return xyz.float() if xyz.dtype in (torch.float16, torch.bfloat16) else xyz


def furthest_point_sample(xyz: torch.Tensor, npoint: int, skip_near_origin: bool = False) -> torch.Tensor:
    """xyz: (B, N, 3) float -> (B, npoint) int32.

    Starts at index 0; each next index is the point with the largest distance to
    the chosen set (lowest index on ties). With ``skip_near_origin`` points with
    x^2+y^2+z^2 <= 1e-3 are never chosen after the first one, which is what
    pointnet2_ops' CUDA kernel does. float16/bfloat16 are compared in float32, as the kernel.
    """
    xyz = _accumulate(xyz)
    B, N, _ = xyz.shape
    out = torch.zeros(B, npoint, dtype=torch.int32, device=xyz.device)
    min_dist = torch.full((B, N), float("inf"), dtype=xyz.dtype, device=xyz.device)
    if skip_near_origin:
        sq_norm = xyz[..., 0] * xyz[..., 0] + xyz[..., 1] * xyz[..., 1] + xyz[..., 2] * xyz[..., 2]
        excluded = sq_norm <= 1e-3  # (B, N)
    batch = torch.arange(B, device=xyz.device)
    last = torch.zeros(B, dtype=torch.long, device=xyz.device)
    for i in range(1, npoint):
        d = squared_distances(xyz, xyz[batch, last].unsqueeze(1)).squeeze(2)  # (B, N)
        min_dist = torch.minimum(min_dist, d)
        candidate = min_dist.masked_fill(excluded, -1.0) if skip_near_origin else min_dist
        last = torch.argmax(candidate, dim=1)  # first maximum = lowest index on ties
        if skip_near_origin:
            # pointnet2_ops keeps index 0 when every remaining point is excluded
            last = torch.where(candidate[batch, last] < 0, torch.zeros_like(last), last)
        out[:, i] = last.to(torch.int32)
    return out


def gather_operation(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """features: (B, C, N), idx: (B, M) int -> (B, C, M)."""
    B, C, _ = features.shape
    index = idx.long().unsqueeze(1).expand(B, C, idx.shape[1])  # (B, C, M)
    return torch.gather(features, 2, index)


def ball_query(radius: float, nsample: int, xyz: torch.Tensor, new_xyz: torch.Tensor) -> torch.Tensor:
    """xyz: (B, N, 3), new_xyz: (B, M, 3) -> (B, M, nsample) int32.

    pointnet2_ops semantics: the first ``nsample`` points (in index order) with
    squared distance < radius^2; the remaining slots repeat the first found
    index; a query with no point in its ball gets all zeros.
    """
    B, M, _ = new_xyz.shape
    N = xyz.shape[1]
    inside = squared_distances(new_xyz, xyz) < radius * radius  # (B, M, N)
    # stable sort puts the inside points first, in index order
    order = torch.sort((~inside).to(torch.uint8), dim=2, stable=True).indices[..., :nsample]  # (B, M, S)
    count = inside.sum(dim=2, keepdim=True)  # (B, M, 1)
    slot = torch.arange(min(nsample, N), device=xyz.device).view(1, 1, -1)
    first = order[..., :1]
    idx = torch.where(slot < count, order, first)
    idx = torch.where(count > 0, idx, torch.zeros_like(idx))
    if nsample > N:
        idx = torch.cat([idx, idx[..., :1].expand(B, M, nsample - N)], dim=2)
    return idx.to(torch.int32)


def grouping_operation(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """features: (B, C, N), idx: (B, M, K) int -> (B, C, M, K)."""
    B, C, _ = features.shape
    _, M, K = idx.shape
    flat = gather_operation(features, idx.reshape(B, M * K))  # (B, C, M*K)
    return flat.view(B, C, M, K)


def three_nn(unknown: torch.Tensor, known: torch.Tensor):
    """unknown: (B, n, 3), known: (B, m, 3) with m >= 3.

    Returns dist (B, n, 3) Euclidean distances ascending and idx (B, n, 3) int32
    (lowest index on ties), as pointnet2_ops.
    """
    d2 = squared_distances(unknown, known)  # (B, n, m)
    d2_sorted, idx = torch.sort(d2, dim=2, stable=True)
    return torch.sqrt(d2_sorted[..., :3]), idx[..., :3].to(torch.int32)


def three_interpolate(features: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """features: (B, C, m), idx: (B, n, 3) int, weight: (B, n, 3) -> (B, C, n)."""
    grouped = grouping_operation(features, idx)  # (B, C, n, 3)
    return (grouped * weight.unsqueeze(1)).sum(dim=3)


def knn(ref: torch.Tensor, query: torch.Tensor, k: int):
    """ref: (B, N, 3), query: (B, M, 3) -> dist (B, M, k) ascending Euclidean, idx (B, M, k) int64.

    float16/bfloat16 distances are computed and ranked in float32 (as the CUDA kernel), then
    rounded to the input dtype before the square root.
    """
    d2 = squared_distances(_accumulate(query), _accumulate(ref))  # (B, M, N)
    d2_sorted, idx = torch.sort(d2, dim=2, stable=True)
    return torch.sqrt(d2_sorted[..., :k].to(ref.dtype)), idx[..., :k]


def chamfer_distance(xyz1: torch.Tensor, xyz2: torch.Tensor):
    """xyz1: (B, N, 3), xyz2: (B, M, 3).

    Returns dist1 (B, N) squared distance from each xyz1 point to its nearest
    xyz2 point, dist2 (B, M) the converse, idx1 (B, N) and idx2 (B, M) int32
    (lowest index on ties). Differentiable in both inputs.
    """
    d2 = squared_distances(xyz1, xyz2)  # (B, N, M)
    dist1, idx1 = torch.min(d2, dim=2)
    dist2, idx2 = torch.min(d2, dim=1)
    return dist1, dist2, idx1.to(torch.int32), idx2.to(torch.int32)
