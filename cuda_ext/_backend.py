"""Loads the compiled kernels (`cuda_ext._C`) or falls back to the pure-torch reference.

The fallback is never silent: the first op that needs it warns once, naming the import error
and the build command. The results are the same (the reference is the definition the kernels
are tested against), only slower.
"""
import warnings
from typing import Optional

import torch

try:
    from . import _C
    _IMPORT_ERROR: Optional[BaseException] = None
except ImportError as err:  # not built, or built against another torch
    _C = None
    _IMPORT_ERROR = err

_warned = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def native(device: torch.device):
    """The compiled module if it can run on ``device``, else None (after one warning)."""
    if _C is None:
        _warn_once(
            "missing",
            f"cuda_ext: the compiled extension cuda_ext._C could not be imported ({_IMPORT_ERROR}); "
            "falling back to the slow pure-torch reference ops (same results). Build it with "
            "`MAX_JOBS=2 python setup.py build_ext --inplace` or `pip install --no-build-isolation -e .`.",
        )
        return None
    if device.type == "cuda" and not _C.with_cuda():
        _warn_once(
            "no_cuda",
            "cuda_ext: cuda_ext._C was built without CUDA; CUDA tensors use the slow pure-torch "
            "reference ops (same results). Rebuild with FORCE_CUDA=1 where nvcc exists.",
        )
        return None
    return _C
