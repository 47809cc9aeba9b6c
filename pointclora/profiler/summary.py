"""One profile of one model: parameters, forward MACs by category, training-step MACs, point ops.

``profile_model`` works on any ``nn.Module``; ``profile_config`` builds the model (and its
adapters) from a config the way training does, then profiles it.
"""
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional

import torch
from torch import nn

from ..adapters import AdapterConfig, MethodConfig, count_parameters, merge_adapters
from ..factory import build_model_with_adapters
from . import point_ops_cost
from .conventions import CONVENTION_OURS, CONVENTION_THOP, CONVENTION_TRAIN
from .flops import CATEGORIES, count_model


@dataclass
class ProfileResult:
    """Costs per sample (batch-size independent), MACs; FLOPs = 2 x MACs."""
    name: str
    points: int
    groups: Optional[int]
    mode: str  # "no adapters", "unmerged" or "merged"
    params: Dict[str, int]
    macs: int
    thop_macs: int
    categories: Dict[str, int]
    kinds: Dict[str, int]
    train_forward_macs: int
    train_backward_macs: int
    point_ops: List[Dict[str, int]]
    per_module: Dict[str, int] = field(default_factory=dict)
    latency: Dict[str, Dict[str, float]] = field(default_factory=dict)
    conventions: Dict[str, str] = field(default_factory=lambda: {
        "ours": CONVENTION_OURS, "thop": CONVENTION_THOP, "train": CONVENTION_TRAIN,
        "point_ops": "FPS/kNN: algorithmic operation counts (8 FLOPs per 3-D squared distance), "
                     "an estimate, not part of the MACs above"})

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def train_flops(self) -> int:
        return 2 * (self.train_forward_macs + self.train_backward_macs)

    @property
    def point_ops_flops(self) -> int:
        return sum(r["flops"] for r in self.point_ops)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(flops=self.flops, train_flops=self.train_flops, point_ops_flops=self.point_ops_flops)
        return d


def profile_model(model: nn.Module, inputs: tuple, name: str = "model", groups: Optional[int] = None,
                  mode: str = "no adapters", per_module: bool = False) -> ProfileResult:
    """Counts forward and training-step MACs of ``model(*inputs)``; inputs[0]: points (B, N, 3)."""
    pts = inputs[0]
    if not isinstance(pts, torch.Tensor) or pts.dim() != 3 or pts.shape[-1] != 3:
        raise ValueError(f"inputs[0]: expected points (B, N, 3), got {getattr(pts, 'shape', type(pts))}")
    batch = pts.shape[0]
    # one run: its forward ops are exactly the inference forward's (eval mode either way)
    trainable = any(p.requires_grad for p in model.parameters())
    fwd = train = count_model(model, inputs, backward=trainable)
    cats = fwd.by("category")
    costs = point_ops_cost.summarize(fwd.point_op_calls)
    return ProfileResult(
        name=name, points=pts.shape[1], groups=groups, mode=mode, params=count_parameters(model),
        macs=fwd.macs() // batch, thop_macs=fwd.thop_macs() // batch,
        categories={c: cats.get(c, 0) // batch for c in CATEGORIES},
        kinds={k: v // batch for k, v in sorted(fwd.by("kind").items())},
        train_forward_macs=train.macs("forward") // batch, train_backward_macs=train.macs("backward") // batch,
        point_ops=point_ops_cost.as_rows(costs),
        per_module={k: v // batch for k, v in fwd.by("module").items()} if per_module else {},
    )


def _merge(model: nn.Module) -> nn.Module:
    out = merge_adapters(model)
    return out if isinstance(out, nn.Module) else model


def build_from_config(cfg: Mapping, merged: bool = False) -> nn.Module:
    """Model + adapters exactly as training builds them (random weights: costs do not depend on them)."""
    model, adapter_cfg = build_model_with_adapters(cfg, None)
    if merged:
        if adapter_cfg is None:
            raise ValueError("--merged: the config has no 'adapter' section, nothing to merge")
        model = _merge(model)
    return model


def example_inputs(cfg: Mapping, batch: int, points: Optional[int]) -> tuple:
    """(points (B, N, 3),) plus category labels (B,) int64 for part segmentation (num_categories)."""
    n = int(points or cfg.get("dataset", {}).get("npoints") or 0)
    if n < 1:
        raise ValueError("--points: not given and the config has no dataset.npoints")
    if batch < 1:
        raise ValueError(f"--batch: expected >= 1, got {batch}")
    gen = torch.Generator().manual_seed(0)
    pts = torch.rand(batch, n, 3, generator=gen) * 2 - 1  # (B, N, 3) in the unit cube
    if cfg.get("model", {}).get("num_categories"):
        return pts, torch.zeros(batch, dtype=torch.long)  # (B,) object category
    return (pts,)


def merge_note(cfg: Mapping) -> Optional[str]:
    """Why the config's adapters cannot merge (DAPT, IDPT, PointGST), or None when they can."""
    if not cfg.get("adapter"):
        return None
    config = AdapterConfig.from_dict(dict(cfg["adapter"]))
    return config.MERGE_NOTE if isinstance(config, MethodConfig) else None


def profile_config(cfg: Mapping, name: str, points: Optional[int] = None, batch: int = 1,
                   merged: bool = False, per_module: bool = False) -> ProfileResult:
    """A merged profile of a method that cannot merge is its unmerged profile, labelled 'not mergeable'."""
    unmergeable = merged and merge_note(cfg) is not None
    merged = merged and not unmergeable
    model = build_from_config(cfg, merged)
    inputs = example_inputs(cfg, batch, points)
    mode = "no adapters" if not cfg.get("adapter") else ("merged" if merged else "unmerged")
    mode = "not mergeable" if unmergeable else mode
    groups = cfg.get("model", {}).get("num_group")
    return profile_model(model, inputs, name=name, groups=groups, mode=mode, per_module=per_module)
