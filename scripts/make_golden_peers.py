#!/usr/bin/env python
"""Golden outputs of the official DAPT and PointGST model code, for tests/test_methods_golden.py.

Needs the official code (not part of this repository, read only here): a checkout or
``git archive`` of github.com/LMD0311/DAPT @ 41aa0bc62dec and github.com/jerryfeng2003/PointGST
@ 7fbe92fe65c2 (their ``models/`` and ``utils/`` folders are enough):

    python scripts/make_golden_peers.py --dapt ../peers-ref/dapt --pgst ../peers-ref/pgst --out tests/data
    python scripts/make_golden_peers.py --dapt ... --pgst ... --check     # also compare with ours, bigger

The official modules import pointnet2_ops, KNN_CUDA and timm; stand-ins are put in sys.modules
first (``cuda_ext.pointnet2_utils``, ``cuda_ext.knn.KNN``, timm's DropPath / trunc_normal_), so
everything runs on the CPU. Every tensor of the state dict (adapters, prompts and scale-shift
factors included) is set by ``formula_state_dict``, a closed-form function of the key's rank in
sorted order, so the golden file stores no weights: only the config, the input points, the
official logits and, for PointGST, the two bases the official code computed (its basis is
numerically fragile; the test substitutes these). A file is a few KB.

Imports of pointclora inside functions are deliberate (and this script is left out of
tests/test_structure.py): they run after the official checkout and the stand-ins are set up.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import types
from pathlib import Path
from typing import Dict, Mapping

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TINY = dict(trans_dim=32, depth=2, drop_path_rate=0.1, cls_dim=5, num_heads=2, group_size=8, num_group=16,
            encoder_dims=32)
CONFIGS = {  # official model keys, tiny widths
    "dapt": dict(NAME="PointTransformer_DAPT", **TINY, rank=4, drop_adapter_rate=0.2, drop_rate=0.0,
                 class_token="use", prompt_token="mean", patch_token="max"),
    "pointgst": dict(NAME="PointTransformer_PGST", **TINY, rank=4, local=8),
}
OFFICIAL_CLASS = {"dapt": ("models.DAPT", "PointTransformer_DAPT"),
                  "pointgst": ("models.PointTransformer", "PointTransformer_PGST")}


def formula_state_dict(reference: Mapping[str, torch.Tensor], std: float = 0.2) -> Dict[str, torch.Tensor]:
    """Deterministic non-zero values for every tensor of ``reference`` (shapes and dtypes kept).

    Entry j of the k-th key (sorted) is std * sin(0.37 j + 1.3 k + 0.5), in float64 then cast;
    LayerNorm / BatchNorm weights and running variances are 1 + that / 2 (kept positive)."""
    out = {}
    for k, key in enumerate(sorted(reference)):
        ref = reference[key]
        if not ref.is_floating_point():
            out[key] = torch.full_like(ref, 3)  # num_batches_tracked
            continue
        j = torch.arange(ref.numel(), dtype=torch.float64)
        values = std * torch.sin(0.37 * j + 1.3 * k + 0.5)
        if key.endswith("running_var") or _is_norm_weight(key, reference):
            values = 1.0 + values.abs() / 2
        out[key] = values.reshape(ref.shape).to(ref.dtype)
    return out


def _is_norm_weight(key: str, reference: Mapping[str, torch.Tensor]) -> bool:
    """weight of a LayerNorm / BatchNorm: a 1-D weight next to a bias of the same shape."""
    if not key.endswith(".weight") or reference[key].dim() != 1:
        return False
    return key[: -len("weight")] + "bias" in reference or "norm" in key


def golden_points(seed: int = 0, batch: int = 2, n: int = 64) -> torch.Tensor:
    """Input clouds (B, n, 3): a closed form too (no RNG), inside the unit cube."""
    t = torch.arange(batch * n * 3, dtype=torch.float64)
    return (0.9 * torch.sin(1.7 * t + seed)).reshape(batch, n, 3).float()


def _install_stand_ins() -> None:
    import cuda_ext
    from cuda_ext import pointnet2_utils
    from cuda_ext.knn import KNN
    from pointclora.models.layers import DropPath

    def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
        return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath, layers.trunc_normal_ = DropPath, trunc_normal_
    timm, timm_models = types.ModuleType("timm"), types.ModuleType("timm.models")
    timm.models, timm_models.layers = timm_models, layers
    knn = types.ModuleType("knn_cuda")
    knn.KNN = KNN
    ops = types.ModuleType("pointnet2_ops")
    ops.pointnet2_utils = pointnet2_utils
    easydict = types.ModuleType("easydict")
    easydict.EasyDict = dict
    sys.modules.update({"timm": timm, "timm.models": timm_models, "timm.models.layers": layers,
                        "knn_cuda": knn, "pointnet2_ops": ops, "pointnet2_ops.pointnet2_utils": pointnet2_utils})
    sys.modules.setdefault("easydict", easydict)
    del cuda_ext


def official_module(root: Path, name: str):
    """Import ``name`` (e.g. models.DAPT) from the official tree ``root`` without its models/__init__."""
    for mod in [m for m in sys.modules if m in ("models", "utils") or m.startswith(("models.", "utils."))]:
        del sys.modules[mod]
    sys.path.insert(0, str(root))
    try:
        for folder in ("models", "utils"):  # bare packages: no models/__init__ (it imports everything),
            package = types.ModuleType(folder)  # and PointGST's utils/ has no __init__.py
            package.__path__ = [str(root / folder)]
            package.__file__ = str(root / folder / "__init__.py")
            sys.modules[folder] = package
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(root))


def official_model(method: str, root: Path, cfg: Mapping):
    module = official_module(root, OFFICIAL_CLASS[method][0])
    keys = dict({k: v for k, v in cfg.items() if k != "NAME"}, tsne=False)
    model = getattr(module, OFFICIAL_CLASS[method][1])(types.SimpleNamespace(**keys))
    return model, module


def run_official(method: str, root: Path, cfg: Mapping, points: torch.Tensor):
    """(logits, state dict, recorded bases or None) of the official model on formula weights."""
    model, module = official_model(method, root, cfg)
    state = formula_state_dict(model.state_dict())
    model.load_state_dict(state, strict=True)
    model.eval()
    bases = []
    if method == "pointgst":
        original = module.get_basis

        def recording(center):
            u = original(center)
            bases.append(u.detach().clone())
            return u
        module.get_basis = recording
    with torch.no_grad():
        logits = model(points)
    return logits, state, bases


def ours(cfg: Mapping, state: Mapping):
    from pointclora.models import build_model

    model = build_model(dict(cfg))
    model.load_state_dict(state, strict=True)
    return model.eval()


def write_golden(method: str, root: Path, out: Path) -> Path:
    from safetensors.torch import save_file

    cfg = CONFIGS[method]
    points = golden_points()
    logits, _, bases = run_official(method, root, cfg, points)
    tensors = {"points": points, "logits": logits.float()}
    if bases:
        tensors["basis"], tensors["local_basis"] = bases[0].float(), bases[1].float()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"golden_{method}.safetensors"
    commit = {"dapt": "41aa0bc62dec", "pointgst": "7fbe92fe65c2"}[method]
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
              metadata={"config": json.dumps(cfg), "official_commit": commit,
                        "weights": "scripts/make_golden_peers.py:formula_state_dict"})
    return path


def check(method: str, root: Path, size: str) -> float:
    """max |ours - official| of the logits, at the tiny widths or at 'full' width (2 blocks)."""
    cfg = dict(CONFIGS[method])
    if size == "full":
        cfg.update(trans_dim=384, num_heads=6, encoder_dims=384, depth=2, group_size=32, num_group=128,
                   **(dict(rank=36, local=32) if method == "pointgst" else dict(rank=64)))
    points = golden_points(batch=2, n=1024 if size == "full" else 64)
    logits, state, bases = run_official(method, root, cfg, points)
    model = ours(cfg, state)
    if method == "pointgst":  # the official basis is fragile: hand ours the bases it used
        from pointclora.adapters import pointgst

        stored = iter(bases)
        pointgst_graph_basis = pointgst.graph_basis
        pointgst.graph_basis = lambda xyz, basis="official": next(stored)
        try:
            with torch.no_grad():
                mine = model(points)
        finally:
            pointgst.graph_basis = pointgst_graph_basis
        with torch.no_grad():  # and our own graph_basis('official'), op for op the released one
            print(f"pointgst: {size} widths, our own official basis: max |ours - official| logits = "
                  f"{float((model(points) - logits).abs().max()):.3g}")
    else:
        with torch.no_grad():
            mine = model(points)
    return float((mine - logits).abs().max())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dapt", type=Path, required=True, help="official DAPT tree (models/, utils/)")
    p.add_argument("--pgst", type=Path, required=True, help="official PointGST tree (models/, utils/)")
    p.add_argument("--out", type=Path, default=REPO / "tests" / "data")
    p.add_argument("--check", action="store_true", help="also print max |ours - official| logits")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    _install_stand_ins()
    roots = {"dapt": args.dapt.resolve(), "pointgst": args.pgst.resolve()}
    for method, root in roots.items():
        path = write_golden(method, root, args.out)
        print(f"{method}: wrote {path} ({path.stat().st_size} bytes)")
        if args.check:
            for size in ("tiny", "full"):
                diff = check(method, root, size)
                print(f"{method}: {size} widths, max |ours - official| logits = {diff:.3g}")
                if not math.isfinite(diff) or diff > 1e-4:
                    print(f"{method}: MISMATCH", file=sys.stderr)
                    return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
