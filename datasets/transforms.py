"""Augmentations of the public recipes (PointNet++ provider, Point-MAE data_transforms).

Every transform works on one cloud (N, C) or a batch (B, N, C); columns 0:3
are xyz, 3:6 (when present) normals. Randomness comes from an explicit
`torch.Generator` when one is passed, else from torch's global RNG, which a
`DataLoader` seeds per worker from its own `generator=`: both make runs
reproducible. Random numbers are drawn on the generator's device (CPU by
default) and moved to the points' device, so batched augmentation on a GPU
gives the same values as on the CPU.

Two kinds:
- point transforms change coordinates and keep N (`__call__(points) -> points`);
- index transforms choose rows (`select(points) -> idx (..., M) int64`); they
  must also be applied to per-point labels, which `apply(item)` does for the
  'seg' field of a part-segmentation item.
"""
import math
from typing import Mapping, Optional, Sequence, Union

import torch

import cuda_ext

Generator = Optional[torch.Generator]


def _rand(shape, generator: Generator, like: torch.Tensor) -> torch.Tensor:
    """U[0, 1) of `shape`, drawn on the generator's device, returned on like's device/dtype."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=device).to(like.device, like.dtype)


def _randn(shape, generator: Generator, like: torch.Tensor) -> torch.Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=device).to(like.device, like.dtype)


def _check_points(points: torch.Tensor, name: str) -> None:
    if not torch.is_tensor(points) or points.dim() not in (2, 3) or points.shape[-1] < 3:
        shape = tuple(points.shape) if torch.is_tensor(points) else type(points).__name__
        raise ValueError(f"{name}: points must be a (N, C>=3) or (B, N, C>=3) tensor, got {shape}")


class PointTransform:
    """Base: changes values, keeps the number and order of points."""

    def __call__(self, points: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        raise NotImplementedError

    def apply(self, item: dict, generator: Generator = None) -> dict:
        item["points"] = self(item["points"], generator)
        return item


class IndexTransform:
    """Base: chooses rows; `select` returns idx (..., M) int64 into dim -2."""

    def select(self, points: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, points: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        return take(points, self.select(points, generator))

    def apply(self, item: dict, generator: Generator = None) -> dict:
        idx = self.select(item["points"], generator)
        item["points"] = take(item["points"], idx)
        if "seg" in item:
            item["seg"] = torch.gather(item["seg"], -1, idx.to(item["seg"].device))
        return item


def take(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """points: (..., N, C), idx: (..., M) int64 -> (..., M, C)."""
    index = idx.to(points.device).unsqueeze(-1).expand(*idx.shape, points.shape[-1])  # (..., M, C)
    return torch.gather(points, -2, index)


class ScaleTranslate(PointTransform):
    """Per-axis scale U[2/3, 3/2] then translation U[-0.2, 0.2] (Point-MAE's
    PointcloudScaleAndTranslate). Normals get the inverse scale and are renormalised."""

    def __init__(self, scale_low: float = 2.0 / 3.0, scale_high: float = 3.0 / 2.0, translate: float = 0.2):
        if not 0 < scale_low <= scale_high:
            raise ValueError(f"scale_low/scale_high must satisfy 0 < low <= high, got {scale_low}, {scale_high}")
        self.scale_low, self.scale_high, self.translate = scale_low, scale_high, translate

    def __call__(self, points, generator=None):
        _check_points(points, "ScaleTranslate")
        shape = (*points.shape[:-2], 1, 3)
        scale = self.scale_low + (self.scale_high - self.scale_low) * _rand(shape, generator, points)
        shift = self.translate * (2 * _rand(shape, generator, points) - 1)
        out = points.clone()
        out[..., 0:3] = points[..., 0:3] * scale + shift
        if points.shape[-1] >= 6:
            out[..., 3:6] = torch.nn.functional.normalize(points[..., 3:6] / scale, dim=-1)
        return out


class RotateUp(PointTransform):
    """Rotation by U[0, 2*pi) about the up axis (y in ModelNet/ShapeNet/ScanObjectNN
    files; Point-MAE's PointcloudRotate). Rotates normals too."""

    AXES = {"x": 0, "y": 1, "z": 2}

    def __init__(self, axis: str = "y", max_angle: float = 2 * math.pi):
        if axis not in self.AXES:
            raise ValueError(f"axis must be one of {list(self.AXES)}, got {axis!r}")
        self.axis, self.max_angle = self.AXES[axis], max_angle

    def matrix(self, angle: torch.Tensor) -> torch.Tensor:
        """angle: (...,) -> (..., 3, 3) rotation about the axis; applied as points @ R
        (for y this is Point-MAE's [[c, 0, s], [0, 1, 0], [-s, 0, c]])."""
        c, s = torch.cos(angle), torch.sin(angle)
        one, zero = torch.ones_like(c), torch.zeros_like(c)
        rows = {
            0: [[one, zero, zero], [zero, c, -s], [zero, s, c]],
            1: [[c, zero, s], [zero, one, zero], [-s, zero, c]],
            2: [[c, -s, zero], [s, c, zero], [zero, zero, one]],
        }[self.axis]
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)  # (..., 3, 3)

    def __call__(self, points, generator=None):
        _check_points(points, "RotateUp")
        angle = self.max_angle * _rand(points.shape[:-2], generator, points)
        rot = self.matrix(angle)  # (..., 3, 3)
        out = points.clone()
        out[..., 0:3] = points[..., 0:3] @ rot
        if points.shape[-1] >= 6:
            out[..., 3:6] = points[..., 3:6] @ rot
        return out


class Jitter(PointTransform):
    """Gaussian noise (std 0.01, clipped to 0.05) on xyz (PointNet++ jitter_point_cloud)."""

    def __init__(self, std: float = 0.01, clip: float = 0.05):
        if std < 0 or clip <= 0:
            raise ValueError(f"std must be >= 0 and clip > 0, got std={std}, clip={clip}")
        self.std, self.clip = std, clip

    def __call__(self, points, generator=None):
        _check_points(points, "Jitter")
        noise = (self.std * _randn((*points.shape[:-1], 3), generator, points)).clamp(-self.clip, self.clip)
        out = points.clone()
        out[..., 0:3] = points[..., 0:3] + noise
        return out


class RandomDropout(IndexTransform):
    """Drop a random fraction U[0, max_ratio) of points, replacing them by the first
    point so N stays fixed (PointNet++ random_point_dropout, max 0.875)."""

    def __init__(self, max_ratio: float = 0.875):
        if not 0 <= max_ratio < 1:
            raise ValueError(f"max_ratio must lie in [0, 1), got {max_ratio}")
        self.max_ratio = max_ratio

    def select(self, points, generator=None):
        _check_points(points, "RandomDropout")
        n = points.shape[-2]
        ratio = self.max_ratio * _rand((*points.shape[:-2], 1), generator, points)  # (..., 1)
        drop = _rand((*points.shape[:-2], n), generator, points) <= ratio  # (..., N)
        idx = torch.arange(n, device=points.device).expand(*points.shape[:-2], n)
        return torch.where(drop, torch.zeros_like(idx), idx)


class FPSSample(IndexTransform):
    """Furthest point sampling to `pool` points, then a random subset of `npoints`
    in random order (Point-MAE fine-tuning: FPS 1200 -> random 1024; pool ==
    npoints gives FPS + random permutation)."""

    def __init__(self, npoints: int, pool: Optional[int] = None):
        pool = npoints if pool is None else pool
        if npoints <= 0 or pool < npoints:
            raise ValueError(f"need 0 < npoints <= pool, got npoints={npoints}, pool={pool}")
        self.npoints, self.pool = npoints, pool

    def select(self, points, generator=None):
        _check_points(points, "FPSSample")
        n = points.shape[-2]
        if n < self.npoints:
            raise ValueError(f"FPSSample: cloud has {n} points, fewer than npoints={self.npoints}")
        xyz = points[..., 0:3].reshape(-1, n, 3).contiguous()  # (B, N, 3)
        if self.pool >= n:
            # FPS of every point is only an ordering, which the random choice below discards
            fps = torch.arange(n, device=points.device).expand(xyz.shape[0], n)  # (B, N)
        else:
            fps = cuda_ext.furthest_point_sample(xyz, self.pool).long()  # (B, P)
        keys = _rand(fps.shape, generator, fps.float())  # (B, P)
        choice = torch.argsort(keys, dim=-1)[:, : self.npoints]  # (B, M)
        idx = torch.gather(fps, 1, choice.to(fps.device))  # (B, M)
        return idx.reshape(*points.shape[:-2], self.npoints)


class Compose:
    """Apply transforms in order, to a tensor (`__call__`) or an item dict (`apply`)."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, points, generator=None):
        for t in self.transforms:
            points = t(points, generator)
        return points

    def apply(self, item: dict, generator: Generator = None) -> dict:
        for t in self.transforms:
            item = apply_transform(t, item, generator)
        return item

    def __len__(self):
        return len(self.transforms)


def apply_transform(transform, item: dict, generator: Generator = None) -> dict:
    """Apply a transform (ours, or any callable on the points tensor) to an item."""
    if hasattr(transform, "apply"):
        return transform.apply(item, generator)
    item["points"] = transform(item["points"])
    return item


TRANSFORMS = {
    "scale_translate": ScaleTranslate,
    "rotate_up": RotateUp,
    "jitter": Jitter,
    "dropout": RandomDropout,
    "fps_sample": FPSSample,
}


def build_transforms(specs: Sequence[Union[str, Mapping]], npoints: int, fps_pool: Optional[int] = None) -> Compose:
    """Names (or {'NAME': name, **kwargs}) -> Compose. 'fps_sample' gets npoints/fps_pool."""
    out = []
    for spec in specs:
        kwargs = {}
        if isinstance(spec, Mapping):
            if "NAME" not in spec:
                raise KeyError(f"transform spec {dict(spec)} has no 'NAME' key (known: {sorted(TRANSFORMS)})")
            kwargs = {k: v for k, v in spec.items() if k != "NAME"}
            spec = spec["NAME"]
        if spec not in TRANSFORMS:
            raise KeyError(f"unknown transform '{spec}'; known transforms: {sorted(TRANSFORMS)}")
        if spec == "fps_sample":
            kwargs.setdefault("npoints", npoints)
            kwargs.setdefault("pool", fps_pool)
        try:
            out.append(TRANSFORMS[spec](**kwargs))
        except TypeError as err:
            raise ValueError(f"transform '{spec}': bad arguments {kwargs} ({err})") from None
    return Compose(out)
