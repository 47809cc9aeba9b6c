"""Adapter configuration: one validated dataclass shared by LoRA, CLoRA, linear probing and CoTo.

Module patterns (`target_modules`, `exclude_modules`, `trainable_modules`) are those of
`pointclora.adapters.patterns`: the exact name, a dotted suffix (`attn.qkv` matches
`blocks.blocks.3.attn.qkv`) or a regex matching the whole name. The default `target_modules` of a
method is the model's own declaration (``ADAPTER_TARGETS``, see `pointclora.models.base`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

from torch import nn

# Layering: pointclora.models' variants import adapters.methods / dapt / pointgst / idpt (which never
# import the models' registry); this module and inject.py read the models' declarations.
from ..models.base import FrozenBNMixin
from .fields import DictConfig, check_int, check_number
from .methods import METHOD_CONFIGS
from .patterns import DEFAULT_TRAINABLE, as_pattern_list

METHODS = ("lora", "clora", "none")
PLACEMENTS = ("input", "weight")


def model_targets(model_or_class, method: str) -> Optional[List[str]]:
    """The default `target_modules` a model (or model class) declares for `method` in its
    ``ADAPTER_TARGETS``; None when it declares none (a model that is not a pointclora model)."""
    declared = getattr(model_or_class, "ADAPTER_TARGETS", None)
    if declared is None or method not in declared:
        return None
    return list(declared[method])


@dataclass
class AdapterConfig(DictConfig):
    """How to adapt a backbone. Defaults give CLoRA (r=8, p=4, input placement) on Point-MAE.

    method: 'clora' | 'lora' | 'none' ('none' adds no adapter: linear probing of trainable_modules).
    rank: r of LoRA's A/B and of CLoRA's D_h (d x r), U_h (r x d), Q_h^j (r x r).
    alpha: LoRA scaling numerator, scaling = alpha / rank (None: alpha = rank, scaling 1).
    num_bases: p, the number of shared (D_h, U_h) pairs of CLoRA.
    placement: CLoRA only: 'input' (x' = x + scale * x dW_j before the target Linear) or 'weight'
        (dW_j^T added to the target's weight, one shared bank per weight shape). LoRA is 'weight'.
    target_modules: Linear layers to adapt (None: the model's default for the method, its
        ADAPTER_TARGETS; without a model, the one every pointclora model shares).
    exclude_modules: Linear layers never adapted even when a target pattern matches them.
    trainable_modules: modules / parameters left trainable besides the adapters (the task head).
    sade_weight: lambda of CLoRA's SADE regulariser, returned by adapter_regularization().
    dropout: dropout on the adapter input (LoRA and CLoRA branch only).
    scale: CLoRA's update scale s in x dW_j * s.
    coto, coto_p_start, coto_ramp_fraction: CoTo progressive activation (see CoToScheduler).
    seed: seed of the adapter initialisation (same adapters on every rank) and of the CoTo draws.
    """

    method: str = "clora"
    rank: int = 8
    alpha: Optional[float] = None
    num_bases: int = 4
    placement: Optional[str] = None
    # a pattern list; a single pattern string or null (no pattern) are accepted and normalised
    target_modules: Union[List[str], str, None] = None
    exclude_modules: Union[List[str], str, None] = field(default_factory=list)
    trainable_modules: Union[List[str], str, None] = field(default_factory=lambda: list(DEFAULT_TRAINABLE))
    sade_weight: float = 0.1
    dropout: float = 0.0
    scale: float = 1.0
    coto: bool = False
    coto_p_start: float = 0.1
    coto_ramp_fraction: float = 0.75
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            if self.method in METHOD_CONFIGS:
                raise ValueError(f"AdapterConfig.method={self.method!r}: that method has its own config, "
                                 f"{METHOD_CONFIGS[self.method].__name__} (AdapterConfig.from_dict picks it)")
            raise ValueError(f"AdapterConfig.method must be one of {METHODS + tuple(METHOD_CONFIGS)}, "
                             f"got {self.method!r}")
        check_int(self.rank, "rank", 1)
        check_int(self.num_bases, "num_bases", 1)
        check_int(self.seed, "seed", 0)
        if self.alpha is not None:
            check_number(self.alpha, "alpha", 0.0, math.inf, True, True)
        self._resolve_placement()
        # True: target_modules was left unset, so apply_adapters takes the model's own default
        self.targets_from_model = self.target_modules is None
        if self.target_modules is None:
            self.target_modules = model_targets(FrozenBNMixin, self.method) or []
        self.target_modules = as_pattern_list(self.target_modules, "target_modules")
        self.exclude_modules = as_pattern_list(self.exclude_modules, "exclude_modules")
        self.trainable_modules = as_pattern_list(self.trainable_modules, "trainable_modules")
        if self.method != "none" and not self.target_modules:
            raise ValueError(f"AdapterConfig.target_modules is empty for method={self.method!r}")
        check_number(self.sade_weight, "sade_weight", 0.0, math.inf, False, True)
        check_number(self.dropout, "dropout", 0.0, 1.0, False, True)
        check_number(self.scale, "scale", -math.inf, math.inf, True, True)
        if not isinstance(self.coto, bool):
            raise ValueError(f"AdapterConfig.coto must be true or false, got {self.coto!r}")
        if self.coto and self.method == "none":
            raise ValueError("AdapterConfig.coto=True needs adapters, but method='none' adds none")
        check_number(self.coto_p_start, "coto_p_start", 0.0, 1.0, False, False)
        check_number(self.coto_ramp_fraction, "coto_ramp_fraction", 0.0, 1.0, True, False)

    def _resolve_placement(self):
        if self.method == "none":
            if self.placement is not None:
                raise ValueError("AdapterConfig.placement must be left unset for method='none'")
            return
        default = "input" if self.method == "clora" else "weight"
        self.placement = default if self.placement is None else self.placement
        if self.placement not in PLACEMENTS:
            raise ValueError(f"AdapterConfig.placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.method == "lora" and self.placement != "weight":
            raise ValueError("AdapterConfig.placement='input' is a CLoRA option; LoRA is placed on the weight")

    def for_model(self, model: nn.Module) -> "AdapterConfig":
        """This config, or a copy with the model's own default targets (its ADAPTER_TARGETS) when
        target_modules was left unset and the model declares others."""
        own = model_targets(model, self.method)
        if not self.targets_from_model or own is None or own == self.target_modules:
            return self
        return dataclasses.replace(self, target_modules=own)

    @property
    def lora_scaling(self) -> float:
        """LoRA's alpha / r (alpha defaults to r)."""
        return (self.rank if self.alpha is None else self.alpha) / self.rank

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "AdapterConfig":
        """Build from a plain mapping (the `adapter:` section of a run's YAML); unknown keys are an error.

        A method with its own config class (dapt, idpt, pointgst: `pointclora.adapters.methods`)
        returns that class's instance instead.
        """
        if isinstance(d, Mapping) and d.get("method") in METHOD_CONFIGS:
            return METHOD_CONFIGS[d["method"]].from_dict(d)
        return cls.from_fields(d)
