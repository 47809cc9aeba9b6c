"""Wall-clock latency, throughput and peak memory of inference and of one training step.

Medians over timed runs after warm-up; CUDA is synchronised before each clock read.
Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA (reset before the timed
runs), and on CPU the process's peak resident set size (VmHWM, reset through
/proc/self/clear_refs where the kernel allows it; it includes the framework and the
model, not only activations).
"""
import re
import statistics
import time
from typing import Callable, Dict, Optional

import torch
from torch import nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _read_hwm_bytes() -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            m = re.search(r"VmHWM:\s+(\d+)\s+kB", f.read())
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def _reset_peak(device: torch.device) -> bool:
    """Resets the peak-memory counter; False when the CPU peak cannot be reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _peak(device: torch.device) -> Optional[int]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return _read_hwm_bytes()


def time_fn(fn: Callable[[], None], device: torch.device, warmup: int, iters: int) -> Dict[str, float]:
    """Runs ``fn`` warmup + iters times; returns median/min milliseconds and peak memory."""
    if warmup < 0 or iters < 1:
        raise ValueError(f"warmup/iters: expected warmup >= 0 and iters >= 1, got {warmup}/{iters}")
    for _ in range(warmup):
        fn()
    _sync(device)
    reset = _reset_peak(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    peak = _peak(device)
    kind = "cuda_max_allocated" if device.type == "cuda" else ("process_peak_rss" if reset else
                                                                "process_peak_rss_since_start")
    return {"median_ms": statistics.median(times), "min_ms": min(times), "iters": iters,
            "peak_memory_bytes": peak, "memory_kind": kind}


def _logits(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def measure_latency(model: nn.Module, inputs: tuple, device: str = "cpu", warmup: int = 3,
                    iters: int = 10, train_step: bool = True) -> Dict[str, Dict[str, float]]:
    """Inference (eval, no grad) and training-step (train mode, forward + cross-entropy against
    random labels + backward + AdamW step over trainable parameters) timings of ``model(*inputs)``.

    inputs: (points (B, N, 3) float, *extra) e.g. part segmentation's category (B,) int64;
    logits: (B, classes) or (B, N, classes). The training step needs B >= 2 (BatchNorm).
    returns {"inference": {...}, "train_step": {...}} with median_ms, min_ms, throughput
    (samples/s), peak_memory_bytes and memory_kind.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: 'cuda' requested but torch sees no CUDA device")
    if not isinstance(inputs, tuple) or not inputs:
        raise ValueError(f"inputs: expected a tuple (points, ...), got {type(inputs).__name__}")
    pts = inputs[0]
    if pts.dim() != 3 or pts.shape[-1] != 3:
        raise ValueError(f"inputs[0]: expected points (B, N, 3), got {tuple(pts.shape)}")
    dev = torch.device(device)
    model = model.to(dev)
    args = tuple(x.to(dev) if isinstance(x, torch.Tensor) else x for x in inputs)
    batch = pts.shape[0]
    was_training = model.training
    model.eval()

    def infer():
        with torch.no_grad():
            model(*args)

    out = {"inference": time_fn(infer, dev, warmup, iters)}
    out["inference"]["throughput"] = batch / (out["inference"]["median_ms"] / 1e3)
    if train_step:
        out["train_step"] = _measure_train_step(model, args, dev, warmup, iters)
    model.train(was_training)
    return out


def _measure_train_step(model: nn.Module, args: tuple, dev: torch.device, warmup: int,
                        iters: int) -> Dict[str, float]:
    batch = args[0].shape[0]
    if batch < 2:
        raise ValueError(f"--batch: a training step needs batch >= 2 (BatchNorm in train mode), got {batch}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: no trainable parameter, nothing to time for a training step")
    model.train()
    with torch.no_grad():
        shape = _logits(model(*args)).shape  # (B, classes) or (B, N, classes)
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, shape[-1], tuple(shape[:-1]), generator=gen).to(dev)
    opt = torch.optim.AdamW(params, lr=1e-6)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = _logits(model(*args))
        nn.functional.cross_entropy(logits.reshape(-1, shape[-1]), labels.reshape(-1)).backward()
        opt.step()

    res = time_fn(step, dev, warmup, iters)
    res["throughput"] = batch / (res["median_ms"] / 1e3)
    opt.zero_grad(set_to_none=True)
    return res
