"""Builds the `cuda_ext._C` extension (C++ with OpenMP, plus CUDA when available).

CUDA is built when torch sees a GPU and a CUDA toolkit exists, or when FORCE_CUDA=1;
FORCE_ONLY_CPU=1 skips it. The `datasets/` folder is installed as `pointclora.datasets`
so that `import datasets` keeps meaning the Hugging Face package.
"""
import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

# pointnet2_ops hard-codes an arch list that fails on new GPUs: cover Volta..Hopper + PTX.
DEFAULT_ARCH_LIST = "7.0 7.5 8.0 8.6 8.9 9.0+PTX"


def want_cuda() -> bool:
    if os.environ.get("FORCE_ONLY_CPU", "0") == "1":
        return False
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    import torch

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
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
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


packages = find_packages(include=["pointclora", "pointclora.*", "cuda_ext", "cuda_ext.*"])
packages.append("pointclora.datasets")

setup(
    name="pointclora",
    version="0.1.0",
    description="Parameter-efficient fine-tuning of pre-trained point-cloud transformers",
    python_requires=">=3.9",
    packages=packages,
    package_dir={"pointclora.datasets": "datasets"},
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    install_requires=["torch>=2.1", "numpy", "pyyaml", "h5py", "tqdm", "safetensors", "matplotlib"],
    # optional: without tensorboard no tb/ log (one line says so); without open3d PNGs use the numpy
    # rasteriser; thop / fvcore only cross-check the FLOP counter in tests
    extras_require={"vis": ["open3d"], "tensorboard": ["tensorboard"], "crosscheck": ["thop", "fvcore"],
                    "test": ["pytest"]},
)
