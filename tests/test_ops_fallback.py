"""Without the compiled extension every op falls back to the reference, with one warning."""
import warnings

import pytest
import torch

import cuda_ext
from cuda_ext import _backend, reference


@pytest.fixture
def no_extension(monkeypatch):
    monkeypatch.setattr(_backend, "_C", None)
    monkeypatch.setattr(_backend, "_IMPORT_ERROR", ImportError("simulated"))
    monkeypatch.setattr(_backend, "_warned", set())


def test_fallback_warns_once_and_matches_reference(no_extension):
    xyz = torch.rand(2, 50, 3)
    with pytest.warns(RuntimeWarning, match="could not be imported"):
        idx = cuda_ext.furthest_point_sample(xyz, 10)
    assert torch.equal(idx, reference.furthest_point_sample(xyz, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        dist, nn = cuda_ext.knn(xyz, xyz[:, :5], 4)
        features = torch.randn(2, 4, 50, requires_grad=True)
        grouped = cuda_ext.grouping_operation(features, nn.int())
        grouped.sum().backward()
        cuda_ext.chamfer_distance(xyz, xyz[:, :7])
        cuda_ext.ball_query(0.2, 4, xyz, xyz[:, :3])
    assert torch.equal(nn, reference.knn(xyz, xyz[:, :5], 4)[1])
    assert features.grad is not None


def test_fallback_still_validates(no_extension):
    with pytest.raises(ValueError, match="npoint"):
        cuda_ext.furthest_point_sample(torch.rand(1, 5, 3), 6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reference_ranks_half_in_float32_as_the_cuda_kernels(dtype):
    # the fallback for CUDA half tensors must give what the kernels give: distances in float32
    torch.manual_seed(0)
    xyz = torch.rand(2, 300, 3).to(dtype)
    exact = xyz.float()
    assert torch.equal(reference.furthest_point_sample(xyz, 40), reference.furthest_point_sample(exact, 40))
    assert torch.equal(
        reference.furthest_point_sample(xyz, 40, skip_near_origin=True),
        reference.furthest_point_sample(exact, 40, skip_near_origin=True),
    )
    dist, idx = reference.knn(xyz, xyz[:, :20], 8)
    d2_exact, idx_exact = torch.sort(reference.squared_distances(exact[:, :20], exact), dim=2, stable=True)
    assert torch.equal(idx, idx_exact[..., :8])
    # the kernel writes float32 squared distances in the input dtype, the wrapper takes the root
    assert dist.dtype == dtype and torch.equal(dist, torch.sqrt(d2_exact[..., :8].to(dtype)))
