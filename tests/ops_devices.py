"""Devices for the op tests, and the rule that a CUDA test runs the CUDA kernels.

Where torch sees a GPU, every op test also runs on "cuda". Without this module's fixture such a
test would pass on the pure-torch reference when cuda_ext._C was built without CUDA (the fallback
warns only once per process): `no_cuda_fallback` turns that warning into an error in every test.
"""
import warnings

import pytest
import torch

from cuda_ext import _backend

CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])


@pytest.fixture(autouse=True)
def no_cuda_fallback(monkeypatch):
    """On a GPU machine: the reference fallback's warning fails the test (each test warns anew)."""
    if not CUDA:
        yield
        return
    monkeypatch.setattr(_backend, "_warned", set())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="cuda_ext:", category=RuntimeWarning)
        yield


FLOATS = [torch.float32, torch.float64]


def on_devices_and_floats(test):
    """Parametrise an op test over DEVICES and float32 / float64 (arguments `device`, `dtype`)."""
    return pytest.mark.parametrize("device", DEVICES)(pytest.mark.parametrize("dtype", FLOATS)(test))


def random_clouds(seed: int, dtype: torch.dtype, batch: int, *counts: int) -> list:
    """One (batch, n, 3) cloud in [0, 1) per n in `counts`, drawn in turn from one generator seeded `seed`."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, n, 3, generator=g, dtype=dtype) for n in counts]


def assert_matches_reference(op, reference_op, features: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
    """op(features, *args) on the features' device vs reference_op on CPU copies: the outputs and the
    gradients for features (features.requires_grad) agree within 1e-5; returns op's output."""
    out = op(features, *args)
    ref_features = features.detach().cpu().requires_grad_()
    want = reference_op(ref_features, *(a.cpu() for a in args))
    torch.testing.assert_close(out.cpu(), want, atol=1e-5, rtol=0)
    grad = torch.randn_like(want)
    out.backward(grad.to(features.device))
    want.backward(grad)
    torch.testing.assert_close(features.grad.cpu(), ref_features.grad, atol=1e-5, rtol=0)
    return out
