#!/usr/bin/env python
"""The Python half of scripts/gpu_check.sh: CUDA kernels against the CPU kernels at the real sizes,
edge cases, and full-size training steps under autocast. Each subcommand appends one markdown
section (a table with one row per check) to --out and exits 1 when any row failed; a check that
raises is a failed row, and the others still run.

    python scripts/gpu_check.py compare --device cuda --out checks.md   # CUDA vs CPU kernels, real sizes
    python scripts/gpu_check.py edge --device cuda --out checks.md      # empty, non-contiguous, side stream
    python scripts/gpu_check.py train --device cuda --out checks.md     # Point-MAE + CLoRA, pre-training
    python scripts/gpu_check.py compare --device cpu --small ...        # dry run: CPU kernels vs reference

With --device cpu the "device" side is the CPU kernels and the expected side the pure-torch
reference (cuda_ext.reference), so the dry run checks something real too.

Imports of the project's own modules inside the stage functions are deliberate (and this script is
left out of tests/test_structure.py): a stage whose module fails to import is one failed row,
and the other stages still run.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cuda_ext  # noqa: E402
from cuda_ext import _backend  # noqa: E402

HALF = (torch.float16, torch.bfloat16)
# real sizes (Point-MAE / Point-BERT / part segmentation / pre-training) and the dry run's tiny ones
SIZES = {
    "fps": ([(32, 8192, 1024), (32, 2048, 128)], [(2, 256, 32)]),  # (B, N, npoint)
    "knn": ([(32, 2048, 128, 32), (32, 8192, 1024, 32)], [(2, 256, 32, 8)]),  # (B, N, M centres, k)
    "ball": ([(16, 8192, 1024, 0.2, 32)], [(2, 256, 32, 0.3, 8)]),  # (B, N, M, radius, nsample)
    "three": ([(16, 8192, 512, 128)], [(2, 256, 16, 8)]),  # (B, n unknown, m known, C)
    "chamfer": ([(4864, 32, 32)], [(16, 8, 8)]),  # (clouds, N, M): 128 x 38 masked patches of 32
    "gather": ([(32, 384, 2048, 128)], [(2, 8, 64, 16)]),  # (B, C, N, M)
    "group": ([(16, 128, 8192, 1024, 32)], [(2, 8, 64, 16, 4)]),  # (B, C, N, M, K) from ball query
}


class Report:
    """Rows of one markdown table; `check` runs a case and turns an exception into a failed row."""

    def __init__(self, title: str):
        self.title, self.rows, self.failed = title, [], 0

    def add(self, check: str, size: str, dtype, ok: bool, indices: str = "-", err: Optional[float] = None,
            tol: Optional[float] = None, note: str = "") -> None:
        self.failed += not ok
        dtype = str(dtype).replace("torch.", "") if dtype is not None else "-"
        err_s = "-" if err is None else f"{err:.3g}"
        tol_s = "-" if tol is None else f"{tol:.3g}"
        self.rows.append([check, size, dtype, indices, err_s, tol_s, "pass" if ok else "FAIL", note])
        print(f"[{'pass' if ok else 'FAIL'}] {check} {size} {dtype} indices={indices} err={err_s} tol={tol_s} {note}",
              flush=True)

    def check(self, check: str, size: str, dtype, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as err:  # noqa: BLE001  (one failed case must not stop the others)
            traceback.print_exc()
            self.add(check, size, dtype, False, note=f"raised {type(err).__name__}: {str(err)[:200]}")

    def markdown(self) -> str:
        head = ["check", "size", "dtype", "indices equal", "max abs error", "tolerance", "result", "note"]
        lines = [f"## {self.title}", "", f"{len(self.rows) - self.failed} of {len(self.rows)} checks passed.", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in self.rows]
        return "\n".join(lines) + "\n\n"


@contextlib.contextmanager
def expected_side(device: str):
    """CPU kernels when checking CUDA; the pure-torch reference when dry-running on the CPU."""
    if device == "cuda":
        yield
        return
    saved = _backend._C
    _backend._C = None
    _backend._warned.add("missing")  # the fallback is intended here
    try:
        yield
    finally:
        _backend._C = saved


def host(t: torch.Tensor) -> torch.Tensor:
    """The CPU copy the expected side computes on: 16-bit types upcast to float32 (as the kernels)."""
    t = t.detach().cpu()
    return t.float() if t.dtype in HALF else t


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a - b).abs().max()) if a.numel() else 0.0


def tolerance(dtype: torch.dtype, scale: float) -> float:
    """1e-5 for float32/64 (the issue's bar); 16-bit types: two roundings of the largest value."""
    return 2 * torch.finfo(dtype).eps * max(scale, 1.0) if dtype in HALF else 1e-5


def values(report, check, size, dtype, got, want, indices="-", note=""):
    err = max_err(got, want)
    tol = tolerance(dtype, float(want.detach().abs().max()) if want.numel() else 1.0)
    report.add(check, size, dtype, err <= tol and indices in ("-", "yes"), indices, err, tol, note)


def same(a: torch.Tensor, b: torch.Tensor) -> str:
    a, b = a.detach().cpu().long(), b.detach().cpu().long()
    if a.shape != b.shape:
        return f"no (shape {tuple(a.shape)} vs {tuple(b.shape)})"
    return "yes" if torch.equal(a, b) else f"no ({int((a != b).sum())} of {a.numel()} differ)"


def cloud(B, N, seed, device, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, N, 3, generator=g).to(dtype).to(device)


# ------------------------------------------------------------------ compare
def compare(device: str, small: bool, dtypes_all, dtypes_float) -> Report:
    r = Report(f"{'CUDA' if device == 'cuda' else 'CPU'} kernels vs {'CPU kernels' if device == 'cuda' else 'reference'}")
    pick = 1 if small else 0
    for B, N, npoint in SIZES["fps"][pick]:
        for dt in dtypes_all:
            def fps(B=B, N=N, npoint=npoint, dt=dt):
                xyz = cloud(B, N, 0, device, dt)
                for skip in (False, True):
                    got = cuda_ext.furthest_point_sample(xyz, npoint, skip)
                    with expected_side(device):
                        want = cuda_ext.furthest_point_sample(host(xyz), npoint, skip)
                    eq = same(got, want)
                    r.add("FPS" + (" (pointnet2 skip)" if skip else ""), f"{B}x{N}->{npoint}", dt, eq == "yes", eq)
            r.check("FPS", f"{B}x{N}->{npoint}", dt, fps)
    for B, N, M, k in SIZES["knn"][pick]:
        for dt in dtypes_all:
            def knn(B=B, N=N, M=M, k=k, dt=dt):
                ref = cloud(B, N, 1, device, dt)
                query = ref[:, :M].contiguous()  # centres are cloud points, as after FPS
                dist, idx = cuda_ext.knn(ref, query, k)
                with expected_side(device):
                    want_d, want_i = cuda_ext.knn(host(ref), host(query), k)
                values(r, "kNN", f"{B}x{N}, {M} centres, k={k}", dt, dist, want_d, same(idx, want_i))
            r.check("kNN", f"{B}x{N}, {M} centres, k={k}", dt, knn)
    for B, N, M, radius, ns in SIZES["ball"][pick]:
        for dt in dtypes_float:
            def ball(B=B, N=N, M=M, radius=radius, ns=ns, dt=dt):
                xyz = cloud(B, N, 2, device, dt)
                got = cuda_ext.ball_query(radius, ns, xyz, xyz[:, :M].contiguous())
                with expected_side(device):
                    want = cuda_ext.ball_query(radius, ns, host(xyz), host(xyz[:, :M]).contiguous())
                eq = same(got, want)
                r.add("ball query", f"{B}x{N}, {M} centres, r={radius}, {ns}", dt, eq == "yes", eq)
            r.check("ball query", f"{B}x{N}, {M} centres", dt, ball)
    for B, n, m, C in SIZES["three"][pick]:
        for dt in dtypes_float:
            r.check("three-NN + interpolate", f"{B}x{n} from {m}", dt, lambda B=B, n=n, m=m, C=C, dt=dt:
                    _three(r, device, B, n, m, C, dt))
    for P, N, M in SIZES["chamfer"][pick]:
        for dt in dtypes_float:
            r.check("Chamfer", f"{P} clouds of {N}/{M}", dt, lambda P=P, N=N, M=M, dt=dt: _chamfer(r, device, P, N, M, dt))
    for B, C, N, M in SIZES["gather"][pick]:
        for dt in dtypes_all:
            def gather(B=B, C=C, N=N, M=M, dt=dt):
                g = torch.Generator().manual_seed(4)
                idx = torch.randint(0, N, (B, M), generator=g, dtype=torch.int32)
                idx[:, ::4] = idx[:, :1]  # repeated indices: the backward adds into the same slot
                _grad_case(r, device, "gather (fwd + bwd, repeated idx)", f"({B},{C},{N}) by {M}", dt,
                           (B, C, N), idx, cuda_ext.gather_operation)
            r.check("gather", f"({B},{C},{N}) by {M}", dt, gather)
    for B, C, N, M, K in SIZES["group"][pick]:
        for dt in dtypes_all:
            def group(B=B, C=C, N=N, M=M, K=K, dt=dt):
                xyz = cloud(B, N, 5, "cpu")
                idx = cuda_ext.ball_query(0.2 if not small else 0.3, K, xyz, xyz[:, :M].contiguous())  # repeats
                _grad_case(r, device, "group (fwd + bwd, ball-query idx)", f"({B},{C},{N}) by ({M},{K})", dt,
                           (B, C, N), idx, cuda_ext.grouping_operation)
            r.check("group", f"({B},{C},{N}) by ({M},{K})", dt, group)
    return r


def _three(r, device, B, n, m, C, dt):
    unknown, known = cloud(B, n, 6, device, dt), cloud(B, m, 7, device, dt)
    dist, idx = cuda_ext.three_nn(unknown, known)
    with expected_side(device):
        want_d, want_i = cuda_ext.three_nn(host(unknown), host(known))
    values(r, "three-NN", f"{B}x{n} from {m}", dt, dist, want_d, same(idx, want_i))
    weight = 1.0 / (want_d + 1e-8)
    weight = (weight / weight.sum(dim=2, keepdim=True)).to(dt)
    feats = torch.randn(B, C, m, generator=torch.Generator().manual_seed(8), dtype=dt)
    f_dev = feats.clone().to(device).requires_grad_()
    out = cuda_ext.three_interpolate(f_dev, want_i.to(device), weight.to(device))
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=dt)
    out.backward(grad.to(device))
    f_host = feats.detach().clone().requires_grad_()
    with expected_side(device):
        want = cuda_ext.three_interpolate(f_host, want_i, weight)
        want.backward(grad)
    values(r, "three_interpolate forward", f"({B},{C},{m}) -> {n}", dt, out, want)
    values(r, "three_interpolate backward", f"({B},{C},{m}) -> {n}", dt, f_dev.grad, f_host.grad)


def _chamfer(r, device, P, N, M, dt):
    a, b = cloud(P, N, 10, device, dt).requires_grad_(), cloud(P, M, 11, device, dt).requires_grad_()
    d1, d2, i1, i2 = cuda_ext.chamfer_distance(a, b)
    g = torch.Generator().manual_seed(12)
    g1, g2 = torch.rand(P, N, generator=g, dtype=dt), torch.rand(P, M, generator=g, dtype=dt)
    torch.autograd.backward([d1, d2], [g1.to(device), g2.to(device)])
    ah, bh = host(a).requires_grad_(), host(b).requires_grad_()
    with expected_side(device):
        w1, w2, j1, j2 = cuda_ext.chamfer_distance(ah, bh)
        torch.autograd.backward([w1, w2], [g1, g2])
    values(r, "Chamfer dist1", f"{P}x{N}", dt, d1, w1, same(i1, j1))
    values(r, "Chamfer dist2", f"{P}x{M}", dt, d2, w2, same(i2, j2))
    values(r, "Chamfer grad xyz1", f"{P}x{N}", dt, a.grad, ah.grad)
    values(r, "Chamfer grad xyz2", f"{P}x{M}", dt, b.grad, bh.grad)


def _grad_case(r, device, check, size, dt, shape, idx, op):
    g = torch.Generator().manual_seed(13)
    feats = torch.randn(*shape, generator=g).to(dt)
    f_dev = feats.clone().to(device).requires_grad_()
    out = op(f_dev, idx.to(device))
    grad = torch.randn(out.shape, generator=g).to(dt)
    out.backward(grad.to(device))
    f_host = host(feats).requires_grad_()
    with expected_side(device):
        want = op(f_host, idx)
        want.backward(host(grad))
    exact = torch.equal(out.detach().cpu().double(), want.detach().double())  # a copy: bit for bit
    r.add(check.replace("fwd + bwd", "forward"), size, dt, exact, "-", note="values equal" if exact else "values differ")
    values(r, check.replace("fwd + bwd", "backward"), size, dt, f_dev.grad, f_host.grad,
           note="16-bit: accumulated in float32" if dt in HALF else "")


# ------------------------------------------------------------------ edge cases
def edge(device: str) -> Report:
    r = Report(f"Edge cases on {device}")
    dev, cpu = torch.device(device), torch.device("cpu")

    def both(name, fn):
        """fn(device) on the device and on the expected side: same results, or the same error."""
        def run():
            try:
                got = fn(dev)
                got_err = None
            except Exception as err:  # noqa: BLE001
                got, got_err = None, err
            with expected_side(device):
                try:
                    want, want_err = fn(cpu), None
                except Exception as err:  # noqa: BLE001
                    want, want_err = None, err
            if got_err or want_err:
                ok = type(got_err) is type(want_err)
                r.add(name, "-", None, ok, note=f"device: {got_err!r:.120}; expected side: {want_err!r:.120}")
                return
            got, want = [got] if torch.is_tensor(got) else got, [want] if torch.is_tensor(want) else want
            errs = [max_err(a.float(), b.float()) for a, b in zip(got, want)]
            shapes = all(a.shape == b.shape for a, b in zip(got, want))
            r.add(name, " ".join(str(tuple(a.shape)) for a in got), None, shapes and max(errs, default=0.0) <= 1e-5,
                  "-", max(errs, default=0.0), 1e-5)
        r.check(name, "-", None, run)

    def grad_of(op, feats_shape, *args):
        def fn(d):
            f = torch.ones(*feats_shape, device=d, requires_grad=True)
            out = op(f, *[a.to(d) for a in args])
            out.sum().backward()
            return [out, f.grad]
        return fn

    z = torch.zeros
    both("FPS, batch 0", lambda d: cuda_ext.furthest_point_sample(z(0, 16, 3, device=d), 4))
    both("kNN, 0 queries", lambda d: list(cuda_ext.knn(cloud(2, 16, 0, d), z(2, 0, 3, device=d), 4)))
    both("kNN, batch 0", lambda d: list(cuda_ext.knn(z(0, 16, 3, device=d), z(0, 4, 3, device=d), 4)))
    both("ball query, 0 centres", lambda d: cuda_ext.ball_query(0.2, 4, cloud(2, 16, 0, d), z(2, 0, 3, device=d)))
    both("three-NN, 0 unknown", lambda d: list(cuda_ext.three_nn(z(2, 0, 3, device=d), cloud(2, 8, 0, d))))
    both("Chamfer, batch 0", lambda d: list(cuda_ext.chamfer_distance(z(0, 4, 3, device=d), z(0, 5, 3, device=d))))
    both("gather fwd+bwd, 0 columns", grad_of(cuda_ext.gather_operation, (2, 3, 5), z(2, 0, dtype=torch.int32)))
    both("gather fwd+bwd, N = 0", grad_of(cuda_ext.gather_operation, (2, 3, 0), z(2, 0, dtype=torch.int32)))
    both("group fwd+bwd, 0 groups", grad_of(cuda_ext.grouping_operation, (2, 3, 5), z(2, 0, 4, dtype=torch.int32)))
    both("three_interpolate fwd+bwd, n = 0", grad_of(cuda_ext.three_interpolate, (2, 3, 0),
                                                     z(2, 0, 3, dtype=torch.int32), z(2, 0, 3)))
    # non-contiguous inputs: transposed views must give the contiguous inputs' results
    xyz_t = torch.rand(2, 3, 300, generator=torch.Generator().manual_seed(1)).transpose(1, 2)  # (2, 300, 3) view
    both("FPS, non-contiguous", lambda d: cuda_ext.furthest_point_sample(xyz_t.to(d), 40))
    both("kNN, non-contiguous", lambda d: list(cuda_ext.knn(xyz_t.to(d), xyz_t.to(d)[:, ::7], 8)))
    both("ball query, non-contiguous", lambda d: cuda_ext.ball_query(0.3, 8, xyz_t.to(d), xyz_t.to(d)[:, ::9]))
    both("three-NN, non-contiguous", lambda d: list(cuda_ext.three_nn(xyz_t.to(d), xyz_t.to(d)[:, ::11])))
    both("Chamfer, non-contiguous", lambda d: list(cuda_ext.chamfer_distance(xyz_t.to(d), xyz_t.to(d)[:, ::3])))
    feats_t = torch.randn(2, 300, 6).transpose(1, 2)  # (2, 6, 300) view
    both("gather, non-contiguous", lambda d: cuda_ext.gather_operation(feats_t.to(d), torch.arange(0, 300, 5, dtype=torch.int32).repeat(2, 1).to(d)))
    both("NaN point rejected", lambda d: cuda_ext.furthest_point_sample(torch.full((1, 8, 3), math.nan, device=d), 2))
    if device == "cuda":
        r.check("side stream", "-", None, lambda: _side_stream(r))
        r.check("repeatable", "-", None, lambda: _repeatable(r))
    return r


def _side_stream(r):
    """Ops on a non-default stream run on it: inputs produced there are complete when they run."""
    s = torch.cuda.Stream()
    base = torch.rand(32, 8192, 3, generator=torch.Generator().manual_seed(3)).cuda()
    want_fps = cuda_ext.furthest_point_sample(base, 1024)
    want_knn = cuda_ext.knn(base, base[:, :128].contiguous(), 32)[1]
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        big = torch.randn(8192, 8192, device="cuda")
        for _ in range(4):
            big = big @ big / 100.0  # keeps the stream busy, so a kernel on another stream would race
        xyz = base + 0 * big[:32, :1, None].sum()  # same values, produced after the matmuls on s
        got_fps = cuda_ext.furthest_point_sample(xyz, 1024)
        got_knn = cuda_ext.knn(xyz, xyz[:, :128].contiguous(), 32)[1]
    s.synchronize()
    eq1, eq2 = same(got_fps, want_fps), same(got_knn, want_knn)
    r.add("side stream: FPS + kNN after matmuls on the stream", "32x8192", torch.float32, eq1 == eq2 == "yes",
          f"{eq1} / {eq2}")


def _repeatable(r):
    xyz = torch.rand(32, 8192, 3, generator=torch.Generator().manual_seed(4)).cuda()
    a, b = cuda_ext.furthest_point_sample(xyz, 1024), cuda_ext.furthest_point_sample(xyz, 1024)
    c, d = cuda_ext.knn(xyz, xyz[:, :1024].contiguous(), 32)[1], cuda_ext.knn(xyz, xyz[:, :1024].contiguous(), 32)[1]
    eq1, eq2 = same(a, b), same(c, d)
    r.add("two runs give the same FPS / kNN indices", "32x8192", torch.float32, eq1 == eq2 == "yes", f"{eq1} / {eq2}")


# ------------------------------------------------------------------ training steps
def deterministic_train(model: torch.nn.Module) -> torch.nn.Module:
    """Train mode (BatchNorm batch statistics, adapters active) with dropout and drop path off, so
    that two variants of one model see the same arithmetic up to precision."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout) or type(m).__name__ == "DropPath":
            m.eval()
    return model


def loss_and_grads(model, batch, dtype, seed=0):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same masks (pre-training) for every variant
    ctx = torch.autocast(batch["points"].device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    with ctx:
        out = model(batch["points"])
        loss = model.loss(out, batch["label"]) if "label" in batch else out
    loss = loss.float()
    loss.backward()
    loss = loss.detach()
    grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
    return float(loss), grads


def cosine(a, b) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


def train(device: str, small: bool) -> Report:
    from bench import train_step as T

    r = Report(f"Training steps on {device} ({'tiny' if small else 'full-size'} models)")
    dev = torch.device(device)
    opts = {"trans_dim": 48, "encoder_dims": 48, "depth": 2, "num_heads": 4, "num_group": 16, "group_size": 8} if small else {}
    batch_size, npoints = (4, 256) if small else (32, T.NPOINTS)
    size = f"batch {batch_size}, {npoints} points"

    def classification():
        models = {a: deterministic_train(T.build_variant("clora", dev, {**opts, "attention": a}).model)
                  for a in ("explicit", "sdpa")}
        batch = T.make_batch(batch_size, npoints, models["explicit"].cls_dim, dev)
        ref_loss, ref_grad = loss_and_grads(models["explicit"], batch, None)
        r.add("Point-MAE + CLoRA fp32 step: finite", size, torch.float32,
              math.isfinite(ref_loss) and bool(torch.isfinite(ref_grad).all()), note=f"loss {ref_loss:.4f}")
        # bf16: the loss within 5 %, gradients pointing the same way (cosine >= 0.9: 8-bit mantissas
        # through 12 blocks and BatchNorm); sdpa in fp32: the same numbers up to float rounding
        for attention, dtype, tol, cos_min in (("explicit", torch.bfloat16, 0.05, 0.9), ("sdpa", None, 1e-4, 0.9999),
                                               ("sdpa", torch.bfloat16, 0.05, 0.9)):
            loss, grad = loss_and_grads(models[attention], batch, dtype)
            rel, cos = abs(loss - ref_loss) / max(abs(ref_loss), 1e-12), cosine(grad, ref_grad)
            ok = math.isfinite(loss) and bool(torch.isfinite(grad).all()) and rel <= tol and cos >= cos_min
            r.add(f"Point-MAE + CLoRA, {attention}, {'bf16 autocast' if dtype else 'fp32'} vs explicit fp32", size,
                  dtype or torch.float32, ok, err=rel, tol=tol,
                  note=f"loss {loss:.4f} vs {ref_loss:.4f}; grad cosine {cos:.6f} (min {cos_min})")

    def trainer_step():
        v = T.set_precision(T.build_variant("clora", dev, {**opts, "attention": "sdpa"}), "bf16")
        batch = T.make_batch(batch_size, npoints, v.model.cls_dim, dev)
        before = [p.detach().clone() for p in v.model.parameters() if p.requires_grad]
        losses = [T.train_step(v, batch) for _ in range(3)]
        moved = any(not torch.equal(a, p) for a, p in zip(before, (p for p in v.model.parameters() if p.requires_grad)))
        r.add("trainer step x3, CLoRA, sdpa, bf16 autocast", size, torch.bfloat16,
              all(math.isfinite(x) for x in losses) and moved, note=f"losses {[round(x, 4) for x in losses]}")

    def pretraining():
        from pointclora.config import load_config
        from pointclora.models import build_model

        cfg = load_config("pretrain_pointmae.yaml")
        n = 256 if small else int(cfg["dataset"].get("npoints", 1024))
        model_cfg = dict(cfg["model"])
        if small:
            model_cfg.update(opts, decoder_num_heads=2, decoder_depth=1)
        points = T.make_batch(batch_size, n, 2, dev)["points"]
        for attention in ("explicit", "sdpa"):
            torch.manual_seed(0)
            model = deterministic_train(build_model(dict(model_cfg, attention=attention)).to(dev))
            ref_loss, ref_grad = loss_and_grads(model, {"points": points}, None, seed=3)
            loss, grad = loss_and_grads(model, {"points": points}, torch.bfloat16, seed=3)
            rel, cos = abs(loss - ref_loss) / max(abs(ref_loss), 1e-12), cosine(grad, ref_grad)
            ok = math.isfinite(loss) and bool(torch.isfinite(grad).all()) and rel <= 0.1 and cos >= 0.9
            r.add(f"Point-MAE pre-training, {attention}, bf16 autocast vs fp32", f"batch {batch_size}, {n} points",
                  torch.bfloat16, ok, err=rel, tol=0.1, note=f"loss {loss:.5f} vs {ref_loss:.5f}; grad cosine {cos:.4f}")

    r.check("Point-MAE + CLoRA step", size, None, classification)
    r.check("trainer step", size, None, trainer_step)
    r.check("pre-training step", size, None, pretraining)
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("compare", "edge", "train"))
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--small", action="store_true", help="tiny sizes (the CPU dry run)")
    p.add_argument("--out", required=True, help="markdown file the section is appended to")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")
    if args.device == "cuda" and (_backend._C is None or not _backend._C.with_cuda()):
        print("warning: cuda_ext._C has no CUDA kernels: the device side is the reference fallback", flush=True)
    warnings.simplefilter("default")
    dtypes_float = [torch.float32, torch.float64]
    dtypes_all = dtypes_float + (list(HALF) if args.device == "cuda" else [])  # the CPU kernels take no 16-bit
    start = time.time()
    if args.what == "compare":
        report = compare(args.device, args.small, dtypes_all, dtypes_float)
    elif args.what == "edge":
        report = edge(args.device)
    else:
        report = train(args.device, args.small)
    report.title += f" ({time.time() - start:.0f} s)"
    with open(args.out, "a") as f:
        f.write(report.markdown())
    print(f"{report.title}: {len(report.rows) - report.failed} of {len(report.rows)} passed")
    return 1 if report.failed or not report.rows else 0


if __name__ == "__main__":
    sys.exit(main())
