#!/usr/bin/env python
"""Writes tests/data/golden_idpt.pt: logits of the OFFICIAL IDPT code on tiny models, which
tests/test_methods_idpt.py compares with pointclora's IDPT without needing the official code.

Needs a checkout of github.com/zyh16143998882/ICCV23-IDPT (generated from commit bf152f226454):

    python scripts/make_golden_idpt.py --official /path/to/ICCV23-IDPT [--out tests/data/golden_idpt.pt]

The official ``models/Point_MAE.py`` and ``models/dgcnn.py`` are imported unchanged from the
checkout, with stand-ins for what they import but cannot have here (``sys.modules`` entries):
pointnet2_ops -> cuda_ext.pointnet2_utils, knn_cuda.KNN -> cuda_ext.knn.KNN, timm's DropPath /
trunc_normal_ -> pointclora's DropPath / torch's trunc_normal_, and small no-op versions of the
official utils.logger / utils.checkpoint / extensions.chamfer_dist / models.build. dgcnn.py builds
its kNN index on ``torch.device('cuda')``; its module-level ``torch`` is replaced by a proxy whose
``device`` returns the CPU, so the official code runs on CPU as written.

Weights: the Point-MAE patch encoder has fixed widths (3-128-256, 512-512-C), so even a tiny model
holds ~300k weights (1.2 MB). The file stores no weights: every tensor comes from
``hashed_state_dict``, a counter-based integer hash (int64 arithmetic, the same bits on every
platform and torch version), and the file keeps a float64 checksum per tensor so a drift of that
generator is reported as such. Every parameter, prompt ones included, is non-zero.

Imports of pointclora inside functions are deliberate (and this script is left out of
tests/test_structure.py): they run after the official checkout and the stand-ins are set up.
"""
import argparse
import importlib
import sys
import types
import zlib
from pathlib import Path
from typing import Dict, List, Mapping

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# tiny sizes: C=32, 3 blocks, 24 groups of 8 (the DGCNN generator's k=20 needs >= 20 groups)
BASE = dict(trans_dim=32, depth=3, drop_path_rate=0.1, cls_dim=5, num_heads=2, group_size=8,
            num_group=24, encoder_dims=32)
CASES: List[Dict] = [  # official values first; each other knob once
    dict(prompt_layer=2, prompt_module="dgcnn", cls_type="all"),
    dict(prompt_layer=0, prompt_module="dgcnn", cls_type="all"),
    dict(prompt_layer=1, prompt_module="dgcnn_light2", cls_type="pointcls"),
    dict(prompt_layer=1, prompt_module="dgcnn_light", cls_type="promptcls"),
    dict(prompt_layer=2, prompt_module="mlp", cls_type="promptonly"),
    dict(prompt_layer=1, prompt_module="transformer", cls_type="all"),
]
SEED = 17
POINTS_SHAPE = (3, 128, 3)


def _hash_uniform(n: int, seed: int) -> torch.Tensor:
    """n floats in [-1, 1) from splitmix64 of (seed, index): unsigned 64-bit integer arithmetic
    (wraps modulo 2^64 by definition), so the same bits on every platform and library version."""
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x10001)
        x = x * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    top24 = (x >> np.uint64(40)).astype(np.float64)  # 24 bits: exact in float32
    return torch.from_numpy(top24 / float(1 << 23) - 1.0).to(torch.float32)


def hashed_state_dict(template: Mapping[str, torch.Tensor], seed: int) -> Dict[str, torch.Tensor]:
    """A deterministic, non-zero value for every tensor of ``template`` (a model's state dict):
    weights ~ U(-1, 1) * sqrt(3 / fan_in) (unit variance gain), norm scales 1 + U(-0.2, 0.2), biases / positional and
    class tokens U(-0.1, 0.1), BN running_mean U(-0.1, 0.1), running_var 1 + U(-0.5, 0.5)."""
    out = {}
    for name, t in template.items():
        if t.dtype == torch.int64:  # num_batches_tracked
            out[name] = torch.tensor(3, dtype=torch.int64)
            continue
        u = _hash_uniform(t.numel(), seed + zlib.crc32(name.encode())).view(t.shape)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "running_var":
            value = 1.0 + 0.5 * u
        elif t.dim() >= 2 and leaf == "weight":
            value = u * (3.0 / t[0].numel()) ** 0.5  # fan_in = in_channels * kernel size
        elif leaf == "weight":  # LayerNorm / BatchNorm scale
            value = 1.0 + 0.2 * u
        else:
            value = 0.1 * u
        out[name] = value.to(t.dtype)
    return out


def checksums(state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(len(state_dict),) float64: the sum of each tensor, in state-dict order."""
    return torch.tensor([float(v.double().sum()) for v in state_dict.values()], dtype=torch.float64)


def golden_points(seed: int = SEED) -> torch.Tensor:
    """(B, N, 3) points in [-1, 1)^3 from the same hash."""
    return _hash_uniform(int(torch.tensor(POINTS_SHAPE).prod()), seed).view(POINTS_SHAPE)


def our_model(case: Mapping) -> torch.nn.Module:
    """pointclora's IDPT with the hashed weights (aliased BatchNorm keys resolved by loading)."""
    from pointclora.models.idpt import PointMAEIDPT

    model = PointMAEIDPT(**BASE, **case)
    model.load_state_dict(hashed_state_dict(model.state_dict(), SEED), strict=True)
    return model.eval()


# ---------------------------------------------------------------- the official code, on CPU
class _TorchOnCPU(types.ModuleType):
    """``torch`` for the official dgcnn.py: ``torch.device(...)`` is the CPU, the rest is torch."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def device(*args, **kwargs):
        return torch.device("cpu")


def _module(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def install_stand_ins() -> None:
    """sys.modules entries for the official imports that need CUDA builds or timm."""
    knn_module = importlib.import_module("cuda_ext.knn")  # the package exports a function named knn
    pointnet2_utils = importlib.import_module("cuda_ext.pointnet2_utils")
    from pointclora.models.layers import DropPath

    def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):  # timm's signature and bounds
        return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)

    def fps(data, number):  # official utils.misc.fps
        idx = pointnet2_utils.furthest_point_sample(data, number)
        return pointnet2_utils.gather_operation(data.transpose(1, 2).contiguous(), idx).transpose(1, 2).contiguous()

    layers = _module("timm.models.layers", DropPath=DropPath, trunc_normal_=trunc_normal_)
    _module("timm.models", layers=layers)
    _module("timm")
    _module("knn_cuda", KNN=knn_module.KNN)
    _module("pointnet2_ops", pointnet2_utils=pointnet2_utils)
    _module("utils", __path__=[]).misc = _module("utils.misc", fps=fps)
    _module("utils.checkpoint", get_missing_parameters_message=str, get_unexpected_parameters_message=str)
    _module("utils.logger", print_log=lambda *a, **k: None, __all__=["print_log"])
    _module("extensions", __path__=[])
    _module("extensions.chamfer_dist", ChamferDistanceL1=torch.nn.Module, ChamferDistanceL2=torch.nn.Module)


def import_official(checkout: Path) -> types.ModuleType:
    """The official models/Point_MAE.py, imported as package ``idpt_official`` from ``checkout``."""
    models_dir = Path(checkout) / "models"
    if not (models_dir / "Point_MAE.py").is_file() or not (models_dir / "dgcnn.py").is_file():
        raise SystemExit(f"--official {checkout}: no models/Point_MAE.py and models/dgcnn.py there "
                         "(clone github.com/zyh16143998882/ICCV23-IDPT)")
    install_stand_ins()
    _module("idpt_official", __path__=[str(models_dir)])
    registry = types.SimpleNamespace(register_module=lambda *a, **k: (lambda cls: cls))  # models/build.py MODELS
    _module("idpt_official.build", MODELS=registry)
    official = importlib.import_module("idpt_official.Point_MAE")
    importlib.import_module("idpt_official.dgcnn").torch = _TorchOnCPU()
    return official


def official_model(official: types.ModuleType, cfg: Mapping, state_dict: Mapping) -> torch.nn.Module:
    model = official.PointTransformer(types.SimpleNamespace(**cfg))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", required=True, type=Path, help="checkout of ICCV23-IDPT")
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "golden_idpt.pt")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    official = import_official(args.official)
    points = golden_points()
    cases = []
    for case in CASES:
        ours = our_model(case)
        state_dict = ours.state_dict()
        ref = official_model(official, {**BASE, **case}, state_dict)
        with torch.no_grad():
            logits = ref(points)
            diff = (ours(points) - logits).abs().max().item()
        print(f"{case}: official logits max |.| {logits.abs().max().item():.3f}, ours differ by {diff:.2e}")
        cases.append(dict(case=dict(case), logits=logits, checksums=checksums(state_dict)))
    torch.save(dict(base=BASE, seed=SEED, points=points, cases=cases,
                    source="github.com/zyh16143998882/ICCV23-IDPT@bf152f226454 models/Point_MAE.py PointTransformer"),
               args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
