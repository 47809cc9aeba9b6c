"""knn, the KNN_CUDA-compatible KNN module and chamfer_distance vs the pure-torch reference."""
import pytest
import torch

import cuda_ext
from cuda_ext import reference
from cuda_ext.knn import KNN

from ops_devices import DEVICES, no_cuda_fallback, on_devices_and_floats, random_clouds  # noqa: F401  (autouse fixture)


def make(kind, B, N, M, dtype=torch.float32):
    g = torch.Generator().manual_seed(N * 3 + M)
    ref = torch.rand(B, N, 3, generator=g, dtype=dtype)
    query = torch.rand(B, M, 3, generator=g, dtype=dtype)
    if kind == "duplicates":
        ref = ref[:, : (N + 1) // 2].repeat(1, 2, 1)[:, :N].contiguous()
        query = torch.cat([ref[:, : M // 2], query[:, M // 2 :]], dim=1)
    elif kind == "identical":
        ref = torch.full_like(ref, 0.25)
    elif kind == "grid":
        ref = torch.randint(0, 3, ref.shape, generator=g).to(dtype)
        query = torch.randint(0, 3, query.shape, generator=g).to(dtype)
    return ref, query


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["random", "duplicates", "identical", "grid"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,N,M,k", [(1, 1, 1, 1), (2, 40, 7, 40), (2, 128, 33, 16), (1, 300, 20, 100)])
def test_knn_matches_reference(device, kind, dtype, B, N, M, k):
    ref, query = make(kind, B, N, M, dtype)
    dist, idx = cuda_ext.knn(ref.to(device), query.to(device), k)
    want_dist, want_idx = reference.knn(ref, query, k)
    assert idx.dtype == torch.int64 and idx.shape == (B, M, k)
    assert torch.equal(idx.cpu(), want_idx)
    torch.testing.assert_close(dist.cpu(), want_dist, atol=1e-5, rtol=0)


def test_knn_hand_checked():
    ref = torch.tensor([[[0.0, 0, 0], [3, 0, 0], [1, 0, 0], [1, 0, 0]]])
    dist, idx = cuda_ext.knn(ref, torch.tensor([[[0.9, 0, 0]]]), 3)
    assert idx.tolist() == [[[2, 3, 0]]]
    torch.testing.assert_close(dist, torch.tensor([[[0.1, 0.1, 0.9]]]))


def test_knn_non_contiguous():
    ref = torch.rand(2, 3, 50).transpose(1, 2)
    query = torch.rand(2, 3, 9).transpose(1, 2)
    assert torch.equal(cuda_ext.knn(ref, query, 5)[1], reference.knn(ref.contiguous(), query.contiguous(), 5)[1])


@pytest.mark.parametrize(
    "ref,query,k,match",
    [
        (torch.rand(1, 5, 3), torch.rand(1, 2, 3), 6, "k"),
        (torch.rand(1, 5, 3), torch.rand(1, 2, 3), 0, "k"),
        (torch.rand(1, 5, 2), torch.rand(1, 2, 3), 1, "ref"),
        (torch.rand(1, 5, 3), torch.rand(2, 2, 3), 1, "batch"),
        (torch.rand(1, 5, 3), torch.rand(1, 2, 3).double(), 1, "dtype"),
        (torch.rand(1, 5, 3).half(), torch.rand(1, 2, 3).half(), 1, "ref"),
    ],
)
def test_knn_bad_input(ref, query, k, match):
    with pytest.raises(ValueError, match=match):
        cuda_ext.knn(ref, query, k)


@pytest.mark.parametrize("transpose_mode", [True, False])
def test_knn_module_matches_knn_cuda_convention(transpose_mode):
    ref, query = torch.rand(2, 64, 3), torch.rand(2, 10, 3)
    want_dist, want_idx = reference.knn(ref, query, 8)  # (B, M, k)
    module = KNN(k=8, transpose_mode=transpose_mode)
    if transpose_mode:
        dist, idx = module(ref, query)  # ref (B, N, 3), query (B, M, 3) -> (B, M, k)
    else:
        dist, idx = module(ref.transpose(1, 2), query.transpose(1, 2))  # (B, 3, N), (B, 3, M) -> (B, k, M)
        dist, idx = dist.transpose(1, 2), idx.transpose(1, 2)
        assert module(ref.transpose(1, 2), query.transpose(1, 2))[1].shape == (2, 8, 10)
    assert torch.equal(idx, want_idx)
    torch.testing.assert_close(dist, want_dist)


@on_devices_and_floats
@pytest.mark.parametrize("B,N,M", [(1, 1, 1), (2, 30, 50), (3, 64, 17)])
def test_chamfer_matches_reference(device, dtype, B, N, M):
    a, b = random_clouds(N + M, dtype, B, N, M)
    a_ref, b_ref = a.clone().requires_grad_(), b.clone().requires_grad_()
    a_dev, b_dev = a.to(device).requires_grad_(), b.to(device).requires_grad_()
    got = cuda_ext.chamfer_distance(a_dev, b_dev)
    want = reference.chamfer_distance(a_ref, b_ref)
    for x, y in zip(got[2:], want[2:]):
        assert x.dtype == torch.int32 and torch.equal(x.cpu(), y)
    for x, y in zip(got[:2], want[:2]):
        torch.testing.assert_close(x.cpu(), y, atol=1e-5, rtol=0)
    (got[0].mean() + 2 * got[1].mean()).backward()
    (want[0].mean() + 2 * want[1].mean()).backward()
    torch.testing.assert_close(a_dev.grad.cpu(), a_ref.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(b_dev.grad.cpu(), b_ref.grad, atol=1e-5, rtol=0)


def test_chamfer_duplicates_and_hand_checked():
    a = torch.tensor([[[0.0, 0, 0], [2, 0, 0]]])
    b = torch.tensor([[[1.0, 0, 0], [1, 0, 0], [0, 0, 0]]])
    dist1, dist2, idx1, idx2 = cuda_ext.chamfer_distance(a, b)
    assert idx1.tolist() == [[2, 0]] and dist1.tolist() == [[0.0, 1.0]]
    assert idx2.tolist() == [[0, 0, 0]] and dist2.tolist() == [[1.0, 1.0, 0.0]]


def test_chamfer_gradcheck_float64():
    a = torch.rand(2, 6, 3, dtype=torch.float64, requires_grad=True)
    b = torch.rand(2, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: cuda_ext.chamfer_distance(x, y)[:2], (a, b))


def test_chamfer_bad_input():
    with pytest.raises(ValueError, match="xyz2"):
        cuda_ext.chamfer_distance(torch.rand(1, 4, 3), torch.rand(1, 4, 2))
    with pytest.raises(ValueError, match="at least one point"):
        cuda_ext.chamfer_distance(torch.rand(1, 0, 3), torch.rand(1, 4, 3))
