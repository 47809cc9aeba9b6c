"""Builds the `cuda_ext._C` extension (C++ with OpenMP, plus CUDA when available).

CUDA is built when torch sees a GPU and a CUDA toolkit exists, or when FORCE_CUDA=1;
FORCE_ONLY_CPU=1 skips it. The `datasets/` folder is installed as `pointclora.datasets`
so that `import datasets` keeps meaning the Hugging Face package.

The extension is compiled against the torch that is already installed, so build without
isolation: `pip install --no-build-isolation .` (a plain `pip install .` builds in an isolated
environment that has no torch, and stops here with a one-line message).
"""
import glob
import os
import re
import subprocess
import sys
from typing import Optional, Tuple

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:
    sys.exit(
        "pointclora: setup.py needs torch installed first (cuda_ext is compiled against it), and this "
        "environment has none; with pip's default build isolation it never has. Install torch, then run "
        "`pip install --no-build-isolation .` (or `-e .`)."
    )

# Default TORCH_CUDA_ARCH_LIST by toolkit version (pointnet2_ops' hard-coded list fails on new GPUs).
# CUDA 13 dropped Volta (nvcc rejects compute_70); 10.0 (B200) and 12.0 (RTX 50) need CUDA >= 12.8.
# +PTX on the newest arch lets later GPUs JIT-compile the kernels.
ARCHS_CUDA13 = "7.5 8.0 8.6 8.9 9.0 10.0 12.0+PTX"
ARCHS_CUDA128 = "7.0 7.5 8.0 8.6 8.9 9.0 10.0 12.0+PTX"
ARCHS_OLDER = "7.0 7.5 8.0 8.6 8.9 9.0+PTX"


def default_arch_list(cuda_version: Optional[Tuple[int, int]]) -> str:
    """The arch list for a toolkit (major, minor); None (unknown) gets the oldest list."""
    if cuda_version is not None and cuda_version >= (13, 0):
        return ARCHS_CUDA13
    if cuda_version is not None and cuda_version >= (12, 8):
        return ARCHS_CUDA128
    return ARCHS_OLDER


def parse_version(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """'Cuda compilation tools, release 13.0, V13.0.88' or '12.8' -> (13, 0) / (12, 8); else None."""
    match = re.search(r"release (\d+)\.(\d+)", text or "") or re.match(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def toolkit_cuda_version() -> Optional[Tuple[int, int]]:
    """The version of the nvcc that will compile (CUDA_HOME's), else the one torch was built with."""
    nvcc = os.path.join(CUDA_HOME, "bin", "nvcc") if CUDA_HOME else None
    if nvcc and os.path.exists(nvcc):
        try:
            out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
            version = parse_version(out)
            if version is not None:
                return version
        except (OSError, subprocess.CalledProcessError):
            pass
    return parse_version(torch.version.cuda)


def want_cuda() -> bool:
    if os.environ.get("FORCE_ONLY_CPU", "0") == "1":
        return False
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def make_extension():
    root = os.path.dirname(os.path.abspath(__file__))
    cpp = sorted(glob.glob(os.path.join(root, "cuda_ext", "csrc", "**", "*.cpp"), recursive=True))
    cu = sorted(glob.glob(os.path.join(root, "cuda_ext", "csrc", "**", "*.cu"), recursive=True))
    cpp = [os.path.relpath(p, root) for p in cpp]
    cu = [os.path.relpath(p, root) for p in cu]
    include = [os.path.join(root, "cuda_ext", "csrc")]
    # -ffp-contract=off: no FMA, so the kernels round exactly like the pure-torch reference.
    # No -std flag: torch's BuildExtension adds the standard its headers need (C++20 from torch 2.14).
    cxx_flags = ["-O3", "-fopenmp", "-ffp-contract=off"]
    if want_cuda():
        if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            version = toolkit_cuda_version()
            os.environ["TORCH_CUDA_ARCH_LIST"] = default_arch_list(version)
            print(f"cuda_ext: CUDA {version}: TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']!r} "
                  "(set TORCH_CUDA_ARCH_LIST to override)")
        return CUDAExtension(
            "cuda_ext._C",
            cpp + cu,
            include_dirs=include,
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--fmad=false"]},
            extra_link_args=["-fopenmp"],
        )
    return CppExtension(
        "cuda_ext._C", cpp, include_dirs=include, extra_compile_args=cxx_flags, extra_link_args=["-fopenmp"]
    )


def main() -> None:
    packages = find_packages(include=["pointclora", "pointclora.*", "cuda_ext", "cuda_ext.*"])
    packages += ["pointclora.datasets", "pointclora.configs"]  # configs/: the shipped YAML, as package data
    setup(
        name="pointclora",
        version="0.1.0",
        description="Parameter-efficient fine-tuning of pre-trained point-cloud transformers",
        python_requires=">=3.9",
        packages=packages,
        package_dir={"pointclora.datasets": "datasets", "pointclora.configs": "configs"},
        package_data={"pointclora.configs": ["*.yaml", "_base_/*.yaml"]},
        ext_modules=[make_extension()],
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
        install_requires=["torch>=2.1", "numpy", "pyyaml", "h5py", "tqdm", "safetensors", "matplotlib"],
        # optional: without tensorboard no tb/ log (one line says so); without open3d PNGs use the numpy
        # rasteriser; thop / fvcore only cross-check the FLOP counter in tests
        extras_require={"vis": ["open3d"], "tensorboard": ["tensorboard"], "crosscheck": ["thop", "fvcore"],
                        "test": ["pytest"]},
    )


# pip and `python setup.py` run this file as __main__; tests and scripts/check_cuda_build.sh import
# it for default_arch_list() without building anything.
if __name__ == "__main__":
    main()
