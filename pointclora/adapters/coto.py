"""CoTo (Zhuang et al., ICML 2025, arXiv 2506.05713): progressive activation of adapters.

Adapters are grouped by transformer block. At construction and after every optimizer step each
block's adapters are switched on with probability
    p(t) = min(1, p_start + (1 - p_start) * t / ceil(ramp_fraction * total_steps)),
at least one block stays on, active adapters are not rescaled, and in eval mode all are on (the
wrapper ignores the draw when not training). Draws come from a seeded generator; under
torch.distributed rank 0 broadcasts its generator state once, at construction, so every rank draws
rank 0's masks with no communication (and no host sync) per optimizer step.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List

import torch
import torch.distributed as dist
from torch import nn

from .base import AdapterLayer

def group_adapters_by_block(model: nn.Module) -> Dict[str, List[AdapterLayer]]:
    """{block name: its adapter wrappers}, blocks as the model describes them
    (`transformer_blocks()`); a wrapper outside every block is its own group.

    Besides the Linear wrappers, any module with ``supports_coto = True`` (PointGST's spectral
    adapter) is switched through its ``coto_active`` flag."""
    blocks = [name for name, _ in model.transformer_blocks()] if hasattr(model, "transformer_blocks") else []
    groups: Dict[str, List[AdapterLayer]] = {}
    for name, module in model.named_modules():
        if isinstance(module, AdapterLayer) or getattr(module, "supports_coto", False):
            block = next((b for b in blocks if name.startswith(b + ".")), name)
            groups.setdefault(block, []).append(module)
    return groups


class CoToScheduler:
    """Draws which blocks' adapters are on. Call `.step()` after every optimizer step."""

    def __init__(self, model: nn.Module, total_steps: int, p_start: float = 0.1, ramp_fraction: float = 0.75, seed: int = 0):
        if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1:
            raise ValueError(f"total_steps must be an integer >= 1, got {total_steps!r}")
        if not 0.0 <= p_start <= 1.0:
            raise ValueError(f"p_start must lie in [0, 1], got {p_start!r}")
        if not 0.0 < ramp_fraction <= 1.0:
            raise ValueError(f"ramp_fraction must lie in (0, 1], got {ramp_fraction!r}")
        self.groups = group_adapters_by_block(model)
        if not self.groups:
            raise ValueError("CoToScheduler: the model has no adapter layers (call apply_adapters first)")
        self.group_names = list(self.groups)
        self.total_steps = total_steps
        self.p_start = float(p_start)
        self.ramp_fraction = float(ramp_fraction)
        self.seed = seed
        self.ramp_steps = math.ceil(ramp_fraction * total_steps)
        self.generator = torch.Generator().manual_seed(seed)
        self.generator.set_state(_broadcast_from_rank0(self.generator.get_state()))  # collective: every rank
        self.t = 0
        self.mask = torch.ones(len(self.group_names), dtype=torch.bool)
        self._draw()

    @property
    def probability(self) -> float:
        """p(t) at the current step."""
        return min(1.0, self.p_start + (1.0 - self.p_start) * self.t / self.ramp_steps)

    @property
    def active_fraction(self) -> float:
        """Fraction of blocks whose adapters are on in training."""
        return int(self.mask.sum()) / len(self.mask)

    def step(self) -> None:
        self.t += 1
        self._draw()

    def _draw(self) -> None:
        n = len(self.group_names)
        mask = torch.rand(n, generator=self.generator) < self.probability
        if not mask.any():  # at least one block stays on
            mask[torch.randint(n, (1,), generator=self.generator)] = True
        self.mask = mask
        self._apply_mask()

    def _apply_mask(self) -> None:
        for name, on in zip(self.group_names, self.mask.tolist()):
            for layer in self.groups[name]:
                layer.coto_active = bool(on)

    def state_dict(self) -> Dict[str, Any]:
        return {
            "t": self.t,
            "total_steps": self.total_steps,
            "p_start": self.p_start,
            "ramp_fraction": self.ramp_fraction,
            "seed": self.seed,
            "generator": self.generator.get_state(),
            "mask": self.mask.clone(),
            "group_names": list(self.group_names),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore step, generator and mask so that a resumed run draws exactly what it would have."""
        missing = sorted({"t", "total_steps", "p_start", "ramp_fraction", "generator", "mask", "group_names"} - set(state))
        if missing:
            raise KeyError(f"CoToScheduler state is missing key(s) {missing}")
        if list(state["group_names"]) != self.group_names:
            raise ValueError(
                f"CoToScheduler state has groups {state['group_names']} but the model has {self.group_names}"
            )
        self.t = int(state["t"])
        self.total_steps = int(state["total_steps"])
        self.p_start = float(state["p_start"])
        self.ramp_fraction = float(state["ramp_fraction"])
        self.seed = state.get("seed", self.seed)
        self.ramp_steps = math.ceil(self.ramp_fraction * self.total_steps)
        self.generator.set_state(state["generator"])
        self.mask = state["mask"].clone().bool()
        self._apply_mask()


def _broadcast_from_rank0(state: torch.Tensor) -> torch.Tensor:
    """Rank 0's copy of a small CPU uint8 tensor (a generator state) on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return state
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    buf = state.to(device=device, dtype=torch.uint8)
    dist.broadcast(buf, src=0)
    return buf.cpu()
