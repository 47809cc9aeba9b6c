#!/usr/bin/env python
"""How much PointGST's logits move with the thread count, the dtype and the batch, per basis.

    .venv/bin/python bench/pointgst_basis.py      # ~2 min: bench/results/pointgst_basis.md

Full-size PointGST (384 wide, 12 blocks, 128 groups of 32, rank 36, local 32) with random
backbone weights and every adapter tensor non-zero, on random clouds of 2048 points in the unit
cube. For each basis ('official', 'stable') it reports max |logits| differences between: 1 and 2
torch threads; float32 and float64; a cloud run alone and inside a batch of 8. It also reports the
smallest eigenvalue gap of the global Laplacian and the scale d_min each basis divides by.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, command_line, machine_header, markdown_table, write_result  # noqa: E402
from pointclora.models import build_model  # noqa: E402

FULL = dict(NAME="PointTransformer_PGST", trans_dim=384, depth=12, drop_path_rate=0.1, cls_dim=15, num_heads=6,
            group_size=32, num_group=128, encoder_dims=384, rank=36, local=32)


def build(basis: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(dict(FULL, basis=basis))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapt" in name:  # up / adapt1 start at zero
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def logits(model, pts, threads: int = 2):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            return model(pts).double()
    finally:
        torch.set_num_threads(old)


def measure(basis: str, clouds: torch.Tensor) -> dict:
    model = build(basis)
    one = clouds[:1]
    ref = logits(model, one, threads=2)
    out = {"threads 1 vs 2": (logits(model, one, threads=1) - ref).abs().max().item(),
           "float64 vs float32": (logits(copy.deepcopy(model).double(), one.double()) - ref).abs().max().item(),
           "alone vs in a batch of 8": (logits(model, clouds)[:1] - ref).abs().max().item(),
           "logit scale (max abs logit)": ref.abs().max().item()}
    _, center = model.group_divider(clouds)
    out.update(spectrum(center, basis))
    return out


def spectrum(center: torch.Tensor, basis: str) -> dict:
    """Smallest gap between consecutive eigenvalues of the global Laplacian, and d_min, over the batch."""
    d = torch.cdist(center, center) if basis == "official" else (center.unsqueeze(-2) - center.unsqueeze(-3)).norm(dim=-1)
    positive = d[d > 0]
    if basis == "official":
        d_min = positive.min()
        adj = 1 / (d / d_min + torch.eye(d.shape[-1]))
    else:
        d_min = torch.where(d > 0, d, torch.full_like(d, float("inf"))).amin(dim=(-2, -1), keepdim=True)
        adj = 1 / (d / d_min + torch.eye(d.shape[-1])).clamp(min=1.0)
    deg = adj.sum(-1).rsqrt()
    lap = torch.eye(d.shape[-1]) - deg.unsqueeze(-1) * adj.double() * deg.unsqueeze(-2)
    evals = torch.linalg.eigvalsh(lap.double())
    true_min = (center.unsqueeze(-2) - center.unsqueeze(-3)).norm(dim=-1)
    true_min = torch.where(true_min > 0, true_min, torch.full_like(true_min, float("inf"))).min()
    return {"d_min used": float(d_min.min()), "true smallest distance": float(true_min),
            "smallest eigenvalue gap": float(evals.diff(dim=-1).min())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(RESULTS_DIR / "pointgst_basis.md"))
    args = p.parse_args(argv)
    header = machine_header(command_line(), "PointGST: output changes caused by the graph basis")
    clouds = torch.rand(8, 2048, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    results = {basis: measure(basis, clouds) for basis in ("official", "stable")}
    keys = list(results["official"])
    rows = [[k] + [f"{results[b][k]:.3g}" for b in results] for k in keys]
    text = header + "\n" + markdown_table(["quantity (logit rows: max abs difference)", "basis: official", "basis: stable"],
                                          rows)
    write_result(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
