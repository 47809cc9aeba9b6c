"""Edge cases the kernels must agree on everywhere: non-finite input, empty backward, double
backward, 16-bit gradient accumulation, and the CPU's top-k semantics on the CUDA kernels."""
import pytest
import torch

import cuda_ext
from cuda_ext import _backend, reference
from ops_devices import CUDA, DEVICES, no_cuda_fallback  # noqa: F401  (autouse fixture)

NAN, INF = float("nan"), float("inf")


@pytest.fixture(params=["native", "reference"])
def path(request, monkeypatch):
    """Runs a test on the compiled kernels and on the pure-torch fallback."""
    if request.param == "reference":
        monkeypatch.setattr(_backend, "_C", None)
        monkeypatch.setattr(_backend, "_warned", {"missing"})  # the fallback warning is tested elsewhere
    return request.param


def cloud(device, n=64, seed=0):
    return torch.rand(2, n, 3, generator=torch.Generator().manual_seed(seed)).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_fps_rejects_non_finite(device, path, bad):
    xyz = cloud(device)
    all_bad = torch.full_like(xyz, bad)  # today: index 0 everywhere
    with pytest.raises(ValueError, match="xyz contains NaN or inf"):
        cuda_ext.furthest_point_sample(all_bad, 8)
    one_bad = xyz.clone()
    one_bad[1, 17, 2] = bad  # today: a NaN point is never picked
    with pytest.raises(ValueError, match="xyz contains NaN or inf"):
        cuda_ext.furthest_point_sample(one_bad, 8)
    with pytest.raises(ValueError, match="xyz contains NaN or inf"):
        cuda_ext.pointnet2_utils.furthest_point_sample(one_bad, 8)


@pytest.mark.parametrize("device", DEVICES)
def test_knn_rejects_nan_reference_point_and_query(device, path):
    ref, query = cloud(device), cloud(device, 8, seed=1)
    bad_ref = ref.clone()
    bad_ref[0, 5, 0] = NAN  # today: silently skipped
    with pytest.raises(ValueError, match="ref contains NaN or inf"):
        cuda_ext.knn(bad_ref, query, 4)
    bad_query = query.clone()
    bad_query[1, 2, 1] = NAN  # today: NaN distances
    with pytest.raises(ValueError, match="query contains NaN or inf"):
        cuda_ext.knn(ref, bad_query, 4)
    with pytest.raises(ValueError, match="query contains NaN or inf"):
        cuda_ext.KNN(4, transpose_mode=True)(ref, bad_query)


@pytest.mark.parametrize("device", DEVICES)
def test_other_point_ops_reject_non_finite(device, path):
    xyz = cloud(device)
    bad = xyz.clone()
    bad[0, 3, 1] = INF
    with pytest.raises(ValueError, match="new_xyz contains NaN or inf"):
        cuda_ext.ball_query(0.2, 4, xyz, bad)
    with pytest.raises(ValueError, match="known contains NaN or inf"):
        cuda_ext.three_nn(xyz, bad)
    with pytest.raises(ValueError, match="xyz1 contains NaN or inf"):
        cuda_ext.chamfer_distance(bad, xyz)
    # features are values, not coordinates: NaN propagates as in torch.gather
    features = torch.randn(2, 4, 64, device=device)
    features[0, 0, 3] = NAN
    out = cuda_ext.gather_operation(features, torch.tensor([[3, 4]] * 2, dtype=torch.int32, device=device))
    assert out[0, 0, 0].isnan() and not out[0, 1].isnan().any()


@pytest.mark.parametrize("device", DEVICES)
def test_empty_backward_gives_empty_gradient(device):
    # CUDA used to check n >= 1 before returning the empty gradient
    features = torch.randn(2, 3, 0, device=device, requires_grad=True)
    cuda_ext.gather_operation(features, torch.zeros(2, 0, dtype=torch.int32, device=device)).sum().backward()
    assert features.grad.shape == (2, 3, 0)
    features.grad = None
    cuda_ext.grouping_operation(features, torch.zeros(2, 0, 4, dtype=torch.int32, device=device)).sum().backward()
    assert features.grad.shape == (2, 3, 0)
    features.grad = None
    idx = torch.zeros(2, 0, 3, dtype=torch.int32, device=device)
    cuda_ext.three_interpolate(features, idx, torch.zeros(2, 0, 3, device=device)).sum().backward()
    assert features.grad.shape == (2, 3, 0)


def _double_backward_cases(device):
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 3, 10, generator=g, dtype=torch.float64).to(device)
    idx2 = torch.randint(0, 10, (2, 6), generator=g, dtype=torch.int32).to(device)
    idx3 = torch.randint(0, 10, (2, 6, 3), generator=g, dtype=torch.int32).to(device)
    w = torch.rand(2, 6, 3, generator=g, dtype=torch.float64).to(device)
    xyz = torch.rand(2, 10, 3, generator=g, dtype=torch.float64).to(device)
    return {
        "gather": (f, lambda x: cuda_ext.gather_operation(x, idx2)),
        "group": (f, lambda x: cuda_ext.grouping_operation(x, idx3)),
        "three_interpolate": (f, lambda x: cuda_ext.three_interpolate(x, idx3, w)),
        "chamfer": (xyz, lambda x: cuda_ext.chamfer_distance(x, xyz[:, :4].flip(1).contiguous() * 0.5)[0]),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["gather", "group", "three_interpolate", "chamfer"])
def test_double_backward_raises_instead_of_silent_zeros(device, op):
    x, fn = _double_backward_cases(device)[op]
    x = x.clone().requires_grad_()
    out = fn(x)
    (grad,) = torch.autograd.grad((out * out).sum(), x, create_graph=True)
    # a gradient penalty: before the fix its second-order term was silently zero
    with pytest.raises(RuntimeError, match="once_differentiable"):
        (out.sum() + (grad * grad).sum()).backward()


def test_three_nn_overflowing_distances_take_the_first_points():
    # all squared distances overflow to inf in float32: the CPU kernel and the reference give the
    # first three points, the CUDA kernel used to leave index 0 in the empty slots
    known = torch.tensor([[[3e38, 0, 0], [-3e38, 0, 0], [0, 3e38, 0], [0, 0, 3e38], [0, -3e38, 0]]])
    unknown = torch.zeros(1, 2, 3)
    want = [[[0, 1, 2], [0, 1, 2]]]
    assert reference.three_nn(unknown, known)[1].tolist() == want
    for device in DEVICES:
        dist, idx = cuda_ext.three_nn(unknown.to(device), known.to(device))
        assert idx.tolist() == want and torch.isinf(dist).all()


@pytest.mark.parametrize("device", DEVICES)
def test_kernels_order_nan_distances_as_the_cpu_kernel(device):
    # The wrappers reject NaN input; the kernels themselves must still agree on it (CPU = CUDA):
    # the first k points fill the list unconditionally, later ones enter only when strictly closer.
    C = _backend._C
    pts = torch.rand(1, 8, 3, generator=torch.Generator().manual_seed(3))
    pts[0, 0] = NAN  # point 0 has NaN distance to everything
    query = pts[:, 3:5].clone()
    d1, _, i1, _ = C.chamfer_forward(query.to(device), pts.to(device))
    assert i1.tolist() == [[0, 0]] and d1.isnan().all()  # the CPU's k = 1 selection keeps point 0
    _, idx = C.three_nn(query.to(device), pts.to(device))
    cpu_idx = C.three_nn(query, pts)[1]
    assert torch.equal(idx.cpu(), cpu_idx) and cpu_idx[0, :, 0].tolist() == [0, 0]
    _, knn_idx = C.knn(pts.to(device), query.to(device), 3)
    assert torch.equal(knn_idx.cpu(), C.knn(pts, query, 3)[1])


@pytest.mark.skipif(not CUDA, reason="needs a GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("op", ["gather", "group"])
def test_half_gradients_accumulate_in_float32(dtype, op):
    # 4096 repeats of one index (ball query gives many): 16-bit atomics would round at every add
    B, C, N, S = 2, 4, 16, 4096
    grad_out = torch.rand(B, C, S, generator=torch.Generator().manual_seed(0)).to(dtype)
    idx = torch.zeros(B, S, dtype=torch.int32)
    idx[:, ::2] = 5
    want = reference.gather_operation  # the exact float32 sum, rounded once
    f32 = torch.zeros(B, C, N, requires_grad=True)
    want(f32, idx).backward(grad_out.float())
    features = torch.zeros(B, C, N, dtype=dtype, device="cuda", requires_grad=True)
    if op == "gather":
        out = cuda_ext.gather_operation(features, idx.cuda())
        out.backward(grad_out.cuda())
    else:
        out = cuda_ext.grouping_operation(features, idx.view(B, S // 8, 8).cuda())
        out.backward(grad_out.view(B, C, S // 8, 8).cuda())
    assert features.grad.dtype == dtype
    # within one rounding of the float32 sum (atomic order varies); 16-bit atomics are off by far more
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(features.grad.float().cpu(), f32.grad, rtol=eps, atol=0)
