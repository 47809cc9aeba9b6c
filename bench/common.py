"""Shared helpers of the benchmarks: result-file header, fair timing, memory, markdown tables.

Timing follows the usual benchmark discipline: every variant is warmed up, CUDA is synchronised
before each clock read, variants are timed in turn inside every repetition (the order rotates each
round, so machine drift and thermal or load changes hit all variants alike), medians are reported.
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import torch

from pointclora.io import atomic_write_text
from pointclora.sweep.report import markdown_table, mean_std  # noqa: F401  (one definition, re-exported)

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"


# ------------------------------------------------------------------ machine / commit header
def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (platform.processor() as a fallback)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def gpu_name() -> str:
    """Name of the CUDA device torch sees, or 'none'."""
    if not torch.cuda.is_available():
        return "none"
    return f"{torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"


def git_commit() -> str:
    """Short HEAD hash, with ' (+ uncommitted changes)' when the tree differs from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    return head + (" (+ uncommitted changes in the working tree)" if dirty else "")


def machine_header(command: str, title: str) -> str:
    """Markdown preamble every result file starts with: command, commit, machine, torch, date."""
    lines = [
        f"# {title}",
        "",
        f"- command: `{command}`",
        f"- commit: {git_commit()}",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores (torch threads {torch.get_num_threads()}), "
        f"GPU: {gpu_name()}",
        f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- load average at start: {load_average()}",
    ]
    return "\n".join(lines) + "\n"


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def command_line() -> str:
    """The command that ran this script, as typed from the repository root."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO_ROOT)
    except ValueError:
        pass
    return " ".join([".venv/bin/python", str(script), *sys.argv[1:]])


# ------------------------------------------------------------------ timing
def synchronize(device: torch.device) -> None:
    """Waits for queued CUDA work so that the clock reads the real end of a step."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one call of `fn`, CUDA-synchronised before both clock reads."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def time_alternating(fns: Mapping[str, Callable[[], object]], device: torch.device, warmup: int,
                     reps: int) -> Dict[str, List[float]]:
    """Times every variant `reps` times, one call of each per round, the order rotated every round.

    fns: {name: zero-argument callable}. returns {name: [ms, ...]} (reps values each).
    """
    if not fns:
        raise ValueError("fns: expected at least one variant to time, got none")
    if warmup < 0 or reps < 1:
        raise ValueError(f"warmup/reps: expected warmup >= 0 and reps >= 1, got {warmup}/{reps}")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            times[name].append(time_once(fns[name], device))
    return times


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("values: expected at least one number, got an empty sequence")
    return float(statistics.median(values))


# ------------------------------------------------------------------ memory (CPU)
def rss_bytes(field: str = "VmRSS") -> Optional[int]:
    """This process's resident set size (VmRSS) or its high-water mark (VmHWM), in bytes."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.M)
    return int(match.group(1)) * 1024 if match else None


def reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ output


def write_result(path: Path, text: str) -> Path:
    """Writes a result file (atomic rename), creating bench/results/ when needed."""
    return atomic_write_text(path, text)
