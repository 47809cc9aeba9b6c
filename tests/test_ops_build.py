"""setup.py: the default CUDA arch list follows the toolkit, and a missing torch is one clear line."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup_py():
    spec = importlib.util.spec_from_file_location("pointclora_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: nothing is built
    return module


@pytest.mark.parametrize(
    "version,archs",
    [
        ((13, 0), "7.5 8.0 8.6 8.9 9.0 10.0 12.0+PTX"),  # CUDA 13 rejects compute_70
        ((13, 2), "7.5 8.0 8.6 8.9 9.0 10.0 12.0+PTX"),
        ((12, 8), "7.0 7.5 8.0 8.6 8.9 9.0 10.0 12.0+PTX"),
        ((12, 9), "7.0 7.5 8.0 8.6 8.9 9.0 10.0 12.0+PTX"),
        ((12, 4), "7.0 7.5 8.0 8.6 8.9 9.0+PTX"),
        ((11, 8), "7.0 7.5 8.0 8.6 8.9 9.0+PTX"),
        (None, "7.0 7.5 8.0 8.6 8.9 9.0+PTX"),
    ],
)
def test_default_arch_list_follows_the_cuda_version(setup_py, version, archs):
    assert setup_py.default_arch_list(version) == archs


def test_parse_version(setup_py):
    nvcc = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88\n"
    assert setup_py.parse_version(nvcc) == (13, 0)
    assert setup_py.parse_version("12.8") == (12, 8)
    assert setup_py.parse_version(None) is None and setup_py.parse_version("cpu") is None


@pytest.mark.parametrize("preset", [None, "8.0 9.0"])
def test_arch_list_default_and_override(setup_py, monkeypatch, preset):
    built = {}
    monkeypatch.setattr(setup_py, "want_cuda", lambda: True)
    monkeypatch.setattr(setup_py, "toolkit_cuda_version", lambda: (13, 0))
    monkeypatch.setattr(setup_py, "CUDAExtension", lambda *a, **kw: built.setdefault("kw", kw))
    if preset is None:
        monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    else:
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", preset)
    setup_py.make_extension()
    assert built["kw"]["define_macros"] == [("WITH_CUDA", None)]
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == (preset or "7.5 8.0 8.6 8.9 9.0 10.0 12.0+PTX")


def test_setup_without_torch_says_what_to_run():
    # what pip's build isolation gives: an environment without torch
    hide_torch = (
        "import sys; sys.modules['torch'] = None; sys.argv = ['setup.py', '--version']; "
        f"exec(compile(open({str(ROOT / 'setup.py')!r}).read(), 'setup.py', 'exec'), {{'__name__': '__main__'}})"
    )
    res = subprocess.run([sys.executable, "-c", hide_torch], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert "needs torch installed first" in res.stderr and "pip install --no-build-isolation ." in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_extension_was_built_with_cuda_where_a_gpu_exists():
    # otherwise every CUDA op test would run the pure-torch reference (see tests/ops_devices.py)
    from cuda_ext import _backend

    assert _backend._C is not None, f"cuda_ext._C did not import: {_backend._IMPORT_ERROR}"
    assert _backend._C.with_cuda(), "cuda_ext._C was built without CUDA: rebuild with FORCE_CUDA=1"
