"""Benchmark of the cuda_ext point ops against the pure-torch reference and public baselines.

    .venv/bin/python bench/point_ops.py                 # CPU, writes bench/results/point_ops_cpu.md
    .venv/bin/python bench/point_ops.py --device cuda   # GPU, writes bench/results/point_ops_cuda.md

Baselines that are not installed are left out of the table (CPU: `pip install fpsample==1.0.2
faiss-cpu`, see bench/requirements.txt). Variants are run alternately, after a warm-up; the table
holds medians, the ratio baseline / cuda_ext (> 1: cuda_ext is faster) and whether the baseline
returns exactly cuda_ext's indices.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cuda_ext  # noqa: E402
from cuda_ext import reference  # noqa: E402

try:
    from cuda_ext import _C  # noqa: E402  (the compiled kernels: their per-method entry points are timed too)
except ImportError:
    _C = None

FPS_SIZES = [(32, 2048, 128), (32, 2048, 1024), (32, 8192, 1024), (1, 10000, 8192)]  # (B, N, npoint)
KNN_SIZES = [(32, 2048, 128, 32), (32, 2048, 512, 32)]  # (B, N, M centres, k)
SMALL_FPS_SIZES, SMALL_KNN_SIZES = [(2, 512, 64)], [(2, 512, 64, 8)]  # --small: a smoke run (scripts/gpu_check.sh)


def timed(fn: Callable, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


SLOW_MS = 2000.0  # variants slower than this (the pure-torch reference) are timed once


def run_variants(variants: Dict[str, Callable], repeats: int, device: str):
    """Median ms per variant: one warm-up call and one timed call each, then the other timed
    calls with the variants alternating (variants slower than SLOW_MS are timed once)."""
    outputs: Dict[str, torch.Tensor] = {}
    times: Dict[str, List[float]] = {}
    for name, fn in variants.items():
        outputs[name] = fn()  # warm-up, and the result to compare
        times[name] = [timed(fn, device)]
    for _ in range(repeats - 1):
        for name, fn in variants.items():
            if times[name][0] <= SLOW_MS:
                times[name].append(timed(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}, outputs


def fps_variants(xyz: torch.Tensor, npoint: int, device: str) -> Dict[str, Callable]:
    v = {"cuda_ext": lambda: cuda_ext.furthest_point_sample(xyz, npoint)}
    if device == "cpu" and _C is not None:
        C = _C
        v["cuda_ext plain loop"] = lambda: C.furthest_point_sample_cpu_method(xyz, npoint, False, 1)
        v["cuda_ext bucket"] = lambda: C.furthest_point_sample_cpu_method(xyz, npoint, False, 2)
    v["pure-torch reference (batched loop)"] = lambda: reference.furthest_point_sample(xyz, npoint)
    if device == "cpu":
        try:
            import fpsample
        except ImportError:
            return v
        clouds = [c.numpy() for c in xyz]
        v["fpsample fps_sampling (vanilla, start 0)"] = lambda: torch.stack(
            [torch.from_numpy(fpsample.fps_sampling(c, npoint, start_idx=0).astype("int64")) for c in clouds])
        v["fpsample bucket_fps_kdline h=7 (start 0)"] = lambda: torch.stack(
            [torch.from_numpy(fpsample.bucket_fps_kdline_sampling(c, npoint, 7, start_idx=0).astype("int64")) for c in clouds])
    return v


def knn_variants(ref: torch.Tensor, query: torch.Tensor, k: int, device: str) -> Dict[str, Callable]:
    v = {
        "cuda_ext": lambda: cuda_ext.knn(ref, query, k)[1],
        "torch.cdist + topk": lambda: torch.cdist(query, ref).topk(k, dim=2, largest=False, sorted=True)[1],
        "pure-torch reference (sort)": lambda: reference.knn(ref, query, k)[1],
    }
    if device == "cpu":
        try:
            import faiss
        except ImportError:
            return v
        refs, queries = [r.numpy() for r in ref], [q.numpy() for q in query]

        def faiss_flat():
            out = []
            for r, q in zip(refs, queries):
                index = faiss.IndexFlatL2(3)
                index.add(r)
                out.append(torch.from_numpy(index.search(q, k)[1]))
            return torch.stack(out)

        v["faiss IndexFlatL2"] = faiss_flat
    return v


def same(a: torch.Tensor, b: torch.Tensor) -> str:
    a, b = a.cpu().long(), b.cpu().long()
    if torch.equal(a, b):
        return "yes"
    if a.shape != b.shape:
        return "no (shape differs)"
    return f"no ({int((a != b).sum())} of {a.numel()} differ)"


def rows_for(op: str, size: str, medians: Dict[str, float], outputs: Dict[str, torch.Tensor]) -> List[Tuple]:
    ours = medians["cuda_ext"]
    return [(op, size, name, ms, ms / ours, same(outputs[name], outputs["cuda_ext"])) for name, ms in medians.items()]


def machine(device: str) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if device == "cuda" else ""
    load = ", load average %.1f when started" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return f"{cpu} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}{load}){gpu}"


def commit() -> str:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.check_output(["git", "-C", root, "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads on the CPU")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=None, help="markdown file (default bench/results/point_ops_<device>.md)")
    parser.add_argument("--small", action="store_true", help="tiny sizes only (a smoke run, not a measurement)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    rows = []
    fps_sizes, knn_sizes = (SMALL_FPS_SIZES, SMALL_KNN_SIZES) if args.small else (FPS_SIZES, KNN_SIZES)
    for B, N, npoint in fps_sizes:
        xyz = torch.rand(B, N, 3, generator=g).to(args.device)
        medians, outputs = run_variants(fps_variants(xyz, npoint, args.device), args.repeats, args.device)
        rows += rows_for("FPS", f"B={B} N={N} npoint={npoint}", medians, outputs)
        print(rows[-len(medians):], flush=True)
    for B, N, M, k in knn_sizes:
        ref = torch.rand(B, N, 3, generator=g).to(args.device)
        query = ref[:, torch.randperm(N, generator=g)[:M].to(args.device)].contiguous()  # centres are cloud points
        medians, outputs = run_variants(knn_variants(ref, query, k, args.device), args.repeats, args.device)
        rows += rows_for("kNN", f"B={B} N={N} M={M} k={k}", medians, outputs)
        print(rows[-len(medians):], flush=True)
    table = ["| op | size | implementation | median ms | ratio (time / cuda_ext) | same indices as cuda_ext |",
             "|---|---|---|---:|---:|---|"]
    table += [f"| {op} | {size} | {name} | {ms:.2f} | {ratio:.2f} | {eq} |" for op, size, name, ms, ratio, eq in rows]
    head = [f"# Point ops benchmark ({args.device})", "",
            f"- command: `{' '.join(['.venv/bin/python'] + sys.argv)}`",
            f"- commit: {commit()}", f"- machine: {machine(args.device)}",
            f"- torch {torch.__version__}, Python {platform.python_version()}",
            f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
            f"- {args.repeats} timed runs per variant after one warm-up, variants alternating (variants slower than "
            f"{SLOW_MS / 1000:.0f} s: one timed run); uniform random clouds in [0, 1]^3",
            "- ratio = implementation time / cuda_ext time (> 1: cuda_ext is faster)", ""]
    text = "\n".join(head + table) + "\n"
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"point_ops_{args.device}.md")
    with open(out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
