"""ball_query, grouping_operation and QueryAndGroup vs the pure-torch reference."""
import pytest
import torch

import cuda_ext
from cuda_ext import pointnet2_utils, reference

from ops_devices import (  # noqa: F401  (no_cuda_fallback: an autouse fixture)
    assert_matches_reference, no_cuda_fallback, on_devices_and_floats, random_clouds,
)  # fmt: skip


@on_devices_and_floats
@pytest.mark.parametrize("B,N,M,radius,nsample", [(1, 1, 1, 0.5, 1), (2, 64, 16, 0.2, 8), (2, 100, 30, 0.4, 32), (1, 20, 5, 10.0, 40)])
def test_ball_query_matches_reference(device, dtype, B, N, M, radius, nsample):
    xyz, new_xyz = random_clouds(N, dtype, B, N, M)
    got = cuda_ext.ball_query(radius, nsample, xyz.to(device), new_xyz.to(device))
    assert got.dtype == torch.int32 and got.shape == (B, M, nsample)
    assert torch.equal(got.cpu(), reference.ball_query(radius, nsample, xyz, new_xyz))


def test_ball_query_hand_checked_and_empty_ball():
    xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0.1, 0, 0], [0.2, 0, 0]]])
    new_xyz = torch.tensor([[[0.05, 0, 0], [9, 9, 9]]])
    # first found index fills the unused slots; a ball with no point gives index 0
    assert cuda_ext.ball_query(0.2, 4, xyz, new_xyz).tolist() == [[[0, 2, 3, 0], [0, 0, 0, 0]]]


def test_ball_query_duplicates_and_boundary():
    xyz = torch.zeros(1, 6, 3)
    xyz[0, 3:, 0] = 0.5  # exactly on the radius: excluded (strict <)
    got = cuda_ext.ball_query(0.5, 5, xyz, torch.zeros(1, 1, 3))
    assert got.tolist() == [[[0, 1, 2, 0, 0]]]
    assert torch.equal(got, reference.ball_query(0.5, 5, xyz, torch.zeros(1, 1, 3)))


def test_ball_query_non_contiguous():
    xyz = torch.rand(2, 3, 50).transpose(1, 2)
    new_xyz = torch.rand(2, 3, 10).transpose(1, 2)
    want = reference.ball_query(0.3, 6, xyz.contiguous(), new_xyz.contiguous())
    assert torch.equal(cuda_ext.ball_query(0.3, 6, xyz, new_xyz), want)


@pytest.mark.parametrize(
    "radius,nsample,xyz,new_xyz,match",
    [
        (0.0, 4, torch.rand(1, 5, 3), torch.rand(1, 2, 3), "radius"),
        (0.1, 0, torch.rand(1, 5, 3), torch.rand(1, 2, 3), "nsample"),
        (0.1, 4, torch.rand(1, 5, 4), torch.rand(1, 2, 3), "xyz"),
        (0.1, 4, torch.rand(1, 5, 3), torch.rand(2, 2, 3), "batch"),
        (0.1, 4, torch.rand(1, 5, 3), torch.rand(1, 2, 3).double(), "dtype"),
    ],
)
def test_ball_query_bad_input(radius, nsample, xyz, new_xyz, match):
    with pytest.raises(ValueError, match=match):
        cuda_ext.ball_query(radius, nsample, xyz, new_xyz)


@on_devices_and_floats
def test_grouping_matches_reference(device, dtype):
    features = torch.randn(2, 5, 40, dtype=dtype, device=device, requires_grad=True)
    idx = torch.randint(0, 40, (2, 12, 6), dtype=torch.int32, device=device)
    out = assert_matches_reference(cuda_ext.grouping_operation, reference.grouping_operation, features, idx)
    assert out.shape == (2, 5, 12, 6)


def test_grouping_gradcheck_float64():
    features = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 6, (2, 4, 5), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda f: cuda_ext.grouping_operation(f, idx), (features,))


def test_grouping_bad_input():
    with pytest.raises(ValueError, match="idx"):
        cuda_ext.grouping_operation(torch.rand(2, 3, 5), torch.zeros(2, 4, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="idx must be in"):
        cuda_ext.grouping_operation(torch.rand(2, 3, 5), torch.full((2, 4, 2), 5, dtype=torch.int32))


def test_query_and_group_and_group_all():
    xyz = torch.rand(2, 30, 3)
    new_xyz = xyz[:, :4]
    features = torch.randn(2, 6, 30)
    out = pointnet2_utils.QueryAndGroup(0.5, 8)(xyz, new_xyz, features)
    assert out.shape == (2, 9, 4, 8)
    idx = reference.ball_query(0.5, 8, xyz, new_xyz)
    want_xyz = reference.grouping_operation(xyz.transpose(1, 2), idx) - new_xyz.transpose(1, 2).unsqueeze(-1)
    torch.testing.assert_close(out[:, :3], want_xyz)
    torch.testing.assert_close(out[:, 3:], reference.grouping_operation(features, idx))
    assert pointnet2_utils.QueryAndGroup(0.5, 8, use_xyz=False)(xyz, new_xyz, features).shape == (2, 6, 4, 8)
    all_ = pointnet2_utils.GroupAll()(xyz, None, features)
    assert all_.shape == (2, 9, 1, 30) and torch.equal(all_[:, :3, 0], xyz.transpose(1, 2))
