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
