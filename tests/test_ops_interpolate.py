"""three_nn and three_interpolate vs the pure-torch reference."""
import pytest
import torch

import cuda_ext
from cuda_ext import reference

from ops_devices import (  # noqa: F401  (no_cuda_fallback: an autouse fixture)
    assert_matches_reference, no_cuda_fallback, on_devices_and_floats, random_clouds,
)  # fmt: skip


@on_devices_and_floats
@pytest.mark.parametrize("B,n,m", [(1, 1, 3), (2, 50, 20), (3, 17, 64)])
def test_three_nn_matches_reference(device, dtype, B, n, m):
    unknown, known = random_clouds(n + m, dtype, B, n, m)
    dist, idx = cuda_ext.three_nn(unknown.to(device), known.to(device))
    want_dist, want_idx = reference.three_nn(unknown, known)
    assert idx.dtype == torch.int32 and torch.equal(idx.cpu(), want_idx)
    torch.testing.assert_close(dist.cpu(), want_dist, atol=1e-5, rtol=0)


def test_three_nn_duplicates_take_lowest_index():
    known = torch.tensor([[[1.0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0], [5, 5, 5]]])
    dist, idx = cuda_ext.three_nn(torch.zeros(1, 1, 3), known)
    assert idx.tolist() == [[[1, 3, 0]]]
    assert dist.tolist() == [[[0.0, 0.0, 1.0]]]


def test_three_nn_non_contiguous():
    unknown = torch.rand(1, 3, 10).transpose(1, 2)
    known = torch.rand(1, 3, 8).transpose(1, 2)
    assert torch.equal(cuda_ext.three_nn(unknown, known)[1], reference.three_nn(unknown.contiguous(), known.contiguous())[1])


@on_devices_and_floats
def test_three_interpolate_matches_reference(device, dtype):
    features = torch.randn(2, 4, 20, dtype=dtype, device=device, requires_grad=True)
    idx = torch.randint(0, 20, (2, 30, 3), dtype=torch.int32, device=device)
    weight = torch.rand(2, 30, 3, dtype=dtype, device=device)
    assert_matches_reference(cuda_ext.three_interpolate, reference.three_interpolate, features, idx, weight)


def test_three_interpolate_gradcheck_float64():
    features = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 7, (2, 5, 3), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
    weight = torch.rand(2, 5, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: cuda_ext.three_interpolate(f, idx, weight), (features,))


def test_interpolation_pipeline_like_pointnet2():
    unknown, known = torch.rand(2, 40, 3), torch.rand(2, 10, 3)
    features = torch.randn(2, 6, 10)
    dist, idx = cuda_ext.three_nn(unknown, known)
    weight = 1.0 / (dist + 1e-8)
    weight = weight / weight.sum(dim=2, keepdim=True)
    out = cuda_ext.three_interpolate(features, idx, weight)
    torch.testing.assert_close(out, reference.three_interpolate(features, idx, weight))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: cuda_ext.three_nn(torch.rand(1, 4, 3), torch.rand(1, 2, 3)), "known"),
        (lambda: cuda_ext.three_nn(torch.rand(1, 4, 2), torch.rand(1, 5, 3)), "unknown"),
        (lambda: cuda_ext.three_interpolate(torch.rand(1, 2, 5), torch.zeros(1, 4, 2, dtype=torch.int32), torch.rand(1, 4, 2)), "idx and weight"),
        (lambda: cuda_ext.three_interpolate(torch.rand(1, 2, 5), torch.zeros(1, 4, 3), torch.rand(1, 4, 3)), "idx"),
        (lambda: cuda_ext.three_interpolate(torch.rand(1, 2, 5), torch.zeros(1, 4, 3, dtype=torch.int32), torch.rand(1, 4, 3).double()), "dtype"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
