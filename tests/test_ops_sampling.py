"""furthest_point_sample and gather_operation vs the pure-torch reference (CPU, CUDA if any)."""
import pytest
import torch

import cuda_ext
from cuda_ext import _backend, reference

from ops_devices import DEVICES, assert_matches_reference, no_cuda_fallback  # noqa: F401  (autouse fixture)
C = _backend._C


def test_compiled_extension_is_used():
    assert C is not None, f"cuda_ext._C failed to import: {_backend._IMPORT_ERROR}"


def clouds(kind: str, B: int, N: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(N * 7 + B)
    if kind == "random":
        return torch.rand(B, N, 3, generator=g, dtype=dtype)
    if kind == "duplicates":  # every point appears 4 times: many exact ties
        base = torch.rand(B, (N + 3) // 4, 3, generator=g, dtype=dtype)
        return base.repeat(1, 4, 1)[:, :N]
    if kind == "identical":
        return torch.full((B, N, 3), 0.5, dtype=dtype)
    if kind == "grid":  # integer grid: equal distances everywhere
        side = int(round(N ** (1 / 3))) + 1
        ax = torch.arange(side, dtype=dtype)
        grid = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)[:N]
        return grid.expand(B, N, 3).contiguous()
    if kind == "near_origin":  # a third of the points inside the pointnet2_ops skip radius
        x = torch.rand(B, N, 3, generator=g, dtype=dtype) * 2 - 1
        x[:, 1::3] *= 0.01
        return x
    raise KeyError(kind)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["random", "duplicates", "identical", "grid", "near_origin"])
@pytest.mark.parametrize("B,N,npoint", [(1, 1, 1), (2, 37, 1), (2, 37, 37), (3, 200, 64), (1, 700, 300)])
@pytest.mark.parametrize("skip", [False, True])
def test_fps_matches_reference(device, kind, B, N, npoint, skip):
    xyz = clouds(kind, B, N).to(device)
    got = cuda_ext.furthest_point_sample(xyz, npoint, skip_near_origin=skip)
    want = reference.furthest_point_sample(xyz.cpu(), npoint, skip_near_origin=skip)
    assert got.dtype == torch.int32 and got.shape == (B, npoint)
    assert torch.equal(got.cpu(), want)


@pytest.mark.parametrize("method", [1, 2])
@pytest.mark.parametrize("kind", ["random", "duplicates", "grid", "near_origin"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("skip", [False, True])
def test_fps_plain_and_bucket_paths_match_reference(method, kind, dtype, skip):
    xyz = clouds(kind, 2, 1500, dtype)
    got = C.furthest_point_sample_cpu_method(xyz, 600, skip, method)
    assert torch.equal(got, reference.furthest_point_sample(xyz, 600, skip_near_origin=skip))


@pytest.mark.parametrize("N", [1, 7, 64, 65, 200])
@pytest.mark.parametrize("kind", ["random", "identical", "near_origin"])
def test_fps_bucket_path_small_clouds(N, kind):
    xyz = clouds(kind, 2, N)
    for npoint in (1, N):
        got = C.furthest_point_sample_cpu_method(xyz, npoint, True, 2)
        assert torch.equal(got, reference.furthest_point_sample(xyz, npoint, skip_near_origin=True))


def test_fps_bucket_path_on_large_cloud():
    xyz = torch.randn(1, 5000, 3, generator=torch.Generator().manual_seed(1))
    plain = C.furthest_point_sample_cpu_method(xyz, 2500, False, 1)
    assert torch.equal(C.furthest_point_sample_cpu_method(xyz, 2500, False, 2), plain)
    assert torch.equal(cuda_ext.furthest_point_sample(xyz, 2500), plain)  # auto picks the bucket path here


def test_fps_hand_checked():
    xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [2, 0, 0]]])
    assert cuda_ext.furthest_point_sample(xyz, 3).tolist() == [[0, 2, 3]]


def test_fps_skip_near_origin_quirk():
    xyz = torch.tensor([[[1.0, 0, 0], [0.01, 0, 0], [0.9, 0, 0]]])
    assert cuda_ext.furthest_point_sample(xyz, 3).tolist() == [[0, 1, 2]]
    # pointnet2_ops never picks the near-origin point 1 and repeats 0 when nothing is left
    assert cuda_ext.furthest_point_sample(xyz, 3, skip_near_origin=True).tolist() == [[0, 2, 0]]
    assert cuda_ext.pointnet2_utils.furthest_point_sample(xyz, 3).tolist() == [[0, 2, 0]]


@pytest.mark.parametrize("device", DEVICES)
def test_fps_non_contiguous_and_float64(device):
    base = torch.rand(2, 3, 300, dtype=torch.float64, device=device)
    xyz = base.transpose(1, 2)  # (2, 300, 3), non-contiguous
    assert not xyz.is_contiguous()
    want = reference.furthest_point_sample(xyz.contiguous().cpu(), 50)
    assert torch.equal(cuda_ext.furthest_point_sample(xyz, 50).cpu(), want)


@pytest.mark.parametrize(
    "args,match",
    [
        ((torch.rand(2, 10, 3), 11), "npoint"),
        ((torch.rand(2, 10, 3), 0), "npoint"),
        ((torch.rand(2, 10, 2), 4), "xyz"),
        ((torch.rand(10, 3), 4), "xyz"),
        ((torch.rand(2, 10, 3).half(), 4), "xyz"),
        ((torch.randint(0, 5, (2, 10, 3)), 4), "xyz"),
    ],
)
def test_fps_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        cuda_ext.furthest_point_sample(*args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,C_,N,M", [(1, 1, 5, 5), (2, 4, 50, 20), (3, 7, 100, 150)])
def test_gather_matches_reference(device, dtype, B, C_, N, M):
    features = torch.randn(B, C_, N, dtype=dtype, device=device, requires_grad=True)
    idx = torch.randint(0, N, (B, M), dtype=torch.int32, device=device)
    assert_matches_reference(cuda_ext.gather_operation, reference.gather_operation, features, idx)


def test_gather_gradcheck_float64():
    features = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([[0, 0, 7, 3], [1, 2, 2, 2]], dtype=torch.int32)  # repeated indices accumulate
    assert torch.autograd.gradcheck(lambda f: cuda_ext.gather_operation(f, idx), (features,))


def test_gather_non_contiguous_and_int64_index():
    features = torch.randn(2, 10, 4).transpose(1, 2)  # (2, 4, 10), non-contiguous
    idx = torch.tensor([[9, 0], [1, 1]])  # int64 is accepted (cast to int32)
    out = cuda_ext.gather_operation(features, idx)
    assert torch.equal(out[0], features[0][:, [9, 0]]) and torch.equal(out[1], features[1][:, [1, 1]])


@pytest.mark.parametrize(
    "features,idx,match",
    [
        (torch.rand(2, 3), torch.zeros(2, 4, dtype=torch.int32), "features"),
        (torch.rand(2, 3, 5), torch.zeros(2, 4), "idx"),
        (torch.rand(2, 3, 5), torch.zeros(3, 4, dtype=torch.int32), "batch"),
        (torch.rand(2, 3, 5).half(), torch.zeros(2, 4, dtype=torch.int32), "features"),
    ],
)
def test_gather_bad_input(features, idx, match):
    with pytest.raises(ValueError, match=match):
        cuda_ext.gather_operation(features, idx)


def test_gather_index_out_of_range_raises():
    with pytest.raises(RuntimeError, match="idx must be in"):
        cuda_ext.gather_operation(torch.rand(1, 2, 5), torch.tensor([[5]], dtype=torch.int32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16/bfloat16 kernels exist on CUDA only")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cuda(dtype):
    xyz = torch.rand(2, 300, 3, dtype=dtype, device="cuda")
    exact = xyz.float().cpu()  # the same values; the kernels accumulate distances in float32
    assert torch.equal(cuda_ext.furthest_point_sample(xyz, 40).cpu(), reference.furthest_point_sample(exact, 40))
    assert torch.equal(cuda_ext.knn(xyz, xyz[:, :20], 8)[1].cpu(), reference.knn(exact, exact[:, :20], 8)[1])
    features = torch.randn(2, 4, 300, dtype=dtype, device="cuda")
    idx = torch.randint(0, 300, (2, 50), dtype=torch.int32, device="cuda")
    assert torch.equal(cuda_ext.gather_operation(features, idx).cpu(), reference.gather_operation(features.cpu(), idx.cpu()))
