"""Augmentations: determinism for a seed, shapes and dtypes kept, hand-checkable effects."""
import math

import pytest
import torch

import cuda_ext
from pointclora.datasets.transforms import (
    Compose, FPSSample, Jitter, RandomDropout, RotateUp, ScaleTranslate, build_transforms,
)  # fmt: skip

ALL = [ScaleTranslate(), RotateUp(), Jitter(), RandomDropout(), FPSSample(32, pool=48)]


def cloud(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(*shape, generator=g) * 2 - 1
    if shape[-1] >= 6:
        pts[..., 3:6] = torch.nn.functional.normalize(pts[..., 3:6], dim=-1)
    return pts


@pytest.mark.parametrize("transform", ALL, ids=lambda t: type(t).__name__)
@pytest.mark.parametrize("shape", [(64, 3), (64, 6), (3, 64, 3), (2, 64, 6)])
def test_deterministic_for_a_seed_and_keeps_dtype(transform, shape):
    pts = cloud(*shape)
    a = transform(pts, torch.Generator().manual_seed(7))
    b = transform(pts, torch.Generator().manual_seed(7))
    c = transform(pts, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32
    expected_n = 32 if isinstance(transform, FPSSample) else shape[-2]
    assert a.shape == (*shape[:-2], expected_n, shape[-1])


@pytest.mark.parametrize("transform", ALL, ids=lambda t: type(t).__name__)
def test_global_rng_is_used_without_generator(transform):
    pts = cloud(64, 3)
    torch.manual_seed(3)
    a = transform(pts)
    torch.manual_seed(3)
    assert torch.equal(a, transform(pts))


def test_scale_translate_ranges_and_normals():
    pts = cloud(4, 128, 6)
    out = ScaleTranslate()(pts, torch.Generator().manual_seed(0))
    # recover per-axis scale from two points: (a' - b') / (a - b)
    scale = (out[:, 0, :3] - out[:, 1, :3]) / (pts[:, 0, :3] - pts[:, 1, :3])
    shift = out[:, 0, :3] - pts[:, 0, :3] * scale
    assert (scale > 2 / 3 - 1e-4).all() and (scale < 1.5 + 1e-4).all()
    assert shift.abs().max() <= 0.2 + 1e-5
    assert torch.allclose(out[..., 3:6].norm(dim=-1), torch.ones(4, 128), atol=1e-5)


@pytest.mark.parametrize("axis,index", [("x", 0), ("y", 1), ("z", 2)])
def test_rotate_up_keeps_axis_and_norms(axis, index):
    pts = cloud(2, 50, 6)
    out = RotateUp(axis=axis)(pts, torch.Generator().manual_seed(1))
    assert torch.allclose(out[..., index], pts[..., index])
    assert torch.allclose(out[..., :3].norm(dim=-1), pts[..., :3].norm(dim=-1), atol=1e-5)
    assert torch.allclose(out[..., 3:].norm(dim=-1), torch.ones(2, 50), atol=1e-5)


def test_rotate_up_matrix_is_point_mae_matrix():
    angle = torch.tensor(math.pi / 2)
    rot = RotateUp("y").matrix(angle)
    expected = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    assert torch.allclose(rot, expected, atol=1e-6)


def test_jitter_is_clipped_and_leaves_normals():
    pts = cloud(256, 6)
    out = Jitter(std=1.0, clip=0.05)(pts, torch.Generator().manual_seed(0))
    assert (out[:, :3] - pts[:, :3]).abs().max() <= 0.05 + 1e-6
    assert torch.equal(out[:, 3:], pts[:, 3:])


def test_dropout_replaces_by_first_point_and_moves_seg():
    item = {"points": cloud(200, 3), "seg": torch.arange(200)}
    idx = RandomDropout(0.8).select(item["points"], torch.Generator().manual_seed(0))
    dropped = idx == 0
    assert 0 < dropped.sum() < 200
    out = RandomDropout(0.8).apply(dict(item), torch.Generator().manual_seed(0))
    assert torch.equal(out["points"][dropped], item["points"][0].expand(int(dropped.sum()), 3))
    assert torch.equal(out["seg"], idx)  # seg follows the same rows


def test_fps_sample_draws_from_the_fps_pool():
    pts = cloud(1, 100, 3)
    pool = cuda_ext.furthest_point_sample(pts, 40)[0].long()
    idx = FPSSample(16, pool=40).select(pts[0], torch.Generator().manual_seed(0))
    assert len(set(idx.tolist())) == 16 and set(idx.tolist()) <= set(pool.tolist())


def test_fps_sample_full_pool_is_a_permutation():
    idx = FPSSample(64).select(cloud(64, 3), torch.Generator().manual_seed(0))
    assert sorted(idx.tolist()) == list(range(64)) and idx.tolist() != list(range(64))


def test_fps_sample_batched_matches_single():
    pts = cloud(2, 80, 3)
    batched = FPSSample(20, pool=30).select(pts, torch.Generator().manual_seed(0))
    pool0 = set(cuda_ext.furthest_point_sample(pts[:1], 30)[0].tolist())
    assert batched.shape == (2, 20) and set(batched[0].tolist()) <= pool0


def test_compose_and_build_transforms():
    compose = build_transforms(["fps_sample", {"NAME": "jitter", "std": 0.0}, "scale_translate"], npoints=16, fps_pool=24)
    assert isinstance(compose, Compose) and len(compose) == 3
    out = compose.apply({"points": cloud(64, 3), "seg": torch.arange(64)}, torch.Generator().manual_seed(0))
    assert out["points"].shape == (16, 3) and out["seg"].shape == (16,)


@pytest.mark.parametrize(
    "spec,error,match",
    [
        (["flip"], KeyError, "unknown transform 'flip'"),
        ([{"std": 1.0}], KeyError, "no 'NAME'"),
        ([{"NAME": "jitter", "sigma": 1.0}], ValueError, "bad arguments"),
    ],
)
def test_build_transforms_errors(spec, error, match):
    with pytest.raises(error, match=match):
        build_transforms(spec, npoints=8)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: ScaleTranslate(2.0, 1.0), "scale_low"),
        (lambda: RotateUp("w"), "axis"),
        (lambda: RandomDropout(1.0), "max_ratio"),
        (lambda: FPSSample(10, pool=5), "npoints <= pool"),
        (lambda: Jitter(std=-1), "std"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_points_and_too_few_points():
    with pytest.raises(ValueError, match="points must be"):
        Jitter()(torch.zeros(10, 2))
    with pytest.raises(ValueError, match="fewer than npoints"):
        FPSSample(20)(torch.zeros(10, 3))
