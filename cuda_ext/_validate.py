"""Argument checks shared by the op wrappers: every failure is a ValueError that names the
argument and says what was expected and what was found."""
from typing import Tuple

import torch

FLOAT_CPU = (torch.float32, torch.float64)
FLOAT_CUDA_HALF = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def tensor(name: str, t, ndim: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    return t


def floating(name: str, t: torch.Tensor, half_on_cuda: bool) -> torch.Tensor:
    """Checks the dtype: float32/float64, plus float16/bfloat16 on CUDA where the op has them."""
    allowed = FLOAT_CUDA_HALF if (half_on_cuda and t.is_cuda) else FLOAT_CPU
    if t.dtype not in allowed:
        where = "CUDA" if t.is_cuda else "CPU"
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        raise ValueError(f"{name} must have dtype in ({names}) on {where}, got {str(t.dtype).replace('torch.', '')}")
    return t.contiguous()


def finite(name: str, t: torch.Tensor) -> torch.Tensor:
    """Rejects NaN/inf coordinates: no ordering of them is meaningful, and the kernels would each
    pick a different one. One reduction (on CUDA it waits for the tensor, like any .item())."""
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def points(name: str, t, half_on_cuda: bool = False) -> torch.Tensor:
    """xyz-like argument: (B, N, 3) finite float -> contiguous."""
    tensor(name, t, 3)
    if t.shape[2] != 3:
        raise ValueError(f"{name} must have shape (B, N, 3), got {tuple(t.shape)}")
    return finite(name, floating(name, t, half_on_cuda))


def index(name: str, t, ndim: int) -> torch.Tensor:
    """Integer index -> contiguous int32 (the kernels' index type)."""
    tensor(name, t, ndim)
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor (int32), got {str(t.dtype).replace('torch.', '')}")
    return t.to(torch.int32).contiguous()


def same_batch_device(names: Tuple[str, ...], *ts: torch.Tensor) -> None:
    first = ts[0]
    for name, t in zip(names[1:], ts[1:]):
        if t.shape[0] != first.shape[0]:
            raise ValueError(f"{name} has batch size {t.shape[0]}, {names[0]} has {first.shape[0]}: they must match")
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device}, {names[0]} is on {first.device}: they must match")


def same_dtype(names: Tuple[str, ...], *ts: torch.Tensor) -> None:
    for name, t in zip(names[1:], ts[1:]):
        if t.dtype != ts[0].dtype:
            raise ValueError(f"{name} has dtype {t.dtype}, {names[0]} has {ts[0].dtype}: they must match")


def count(name: str, value, low: int, high: int, what: str) -> int:
    """Integer in [low, high]; ``what`` says where high comes from (e.g. 'N = 1024 points')."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or value > high:
        raise ValueError(f"{name} must be in [{low}, {high}] ({what}), got {value}")
    return value
