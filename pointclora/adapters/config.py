"""Adapter configuration: one validated dataclass shared by LoRA, CLoRA, linear probing and CoTo.

Module patterns (`target_modules`, `exclude_modules`, `trainable_modules`) match a dotted module or
parameter name when the pattern is the exact name, a dotted suffix of it (`attn.qkv` matches
`blocks.blocks.3.attn.qkv`) or a regular expression that matches the whole name
(`blocks\\.blocks\\.[0-5]\\.attn\\.qkv`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

METHODS = ("lora", "clora", "none")
PLACEMENTS = ("input", "weight")

# CLoRA's paper places one low-rank module on the (normalised) input of the attention block and one
# on the input of the MLP block of every layer; in Point-MAE these are the inputs of attn.qkv / mlp.fc1.
DEFAULT_TARGETS = {
    ("clora", "input"): ["attn.qkv", "mlp.fc1"],
    ("clora", "weight"): ["attn.qkv", "mlp.fc1"],
    ("lora", "weight"): ["attn.qkv"],
}
# Point-MAE fine-tuning trains the classification head and the class token / its position embedding.
DEFAULT_TRAINABLE = ["cls_head_finetune", "cls_token", "cls_pos"]


def matches(name: str, pattern: str) -> bool:
    """True when `pattern` is `name`, a dotted suffix of it, or a regex matching all of it."""
    if name == pattern or name.endswith("." + pattern):
        return True
    return re.fullmatch(pattern, name) is not None


def _as_pattern_list(value: Any, field_name: str) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"AdapterConfig.{field_name} must be a list of non-empty strings, got {value!r}")
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"AdapterConfig.{field_name}: {pattern!r} is not a valid regex ({err})") from None
    return list(value)


def _check_number(value: Any, field_name: str, low: float, high: float, low_open: bool, high_open: bool):
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok_type or not math.isfinite(value):
        raise ValueError(f"AdapterConfig.{field_name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"AdapterConfig.{field_name} must lie in {interval}, got {value!r}")


def _check_int(value: Any, field_name: str, minimum: int):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"AdapterConfig.{field_name} must be an integer >= {minimum}, got {value!r}")


@dataclass
class AdapterConfig:
    """How to adapt a backbone. Defaults give CLoRA (r=8, p=4, input placement) on Point-MAE.

    method: 'clora' | 'lora' | 'none' ('none' adds no adapter: linear probing of trainable_modules).
    rank: r of LoRA's A/B and of CLoRA's D_h (d x r), U_h (r x d), Q_h^j (r x r).
    alpha: LoRA scaling numerator, scaling = alpha / rank (None: alpha = rank, scaling 1).
    num_bases: p, the number of shared (D_h, U_h) pairs of CLoRA.
    placement: CLoRA only: 'input' (x' = x + scale * x dW_j before the target Linear) or 'weight'
        (dW_j^T added to the target's weight, one shared bank per weight shape). LoRA is 'weight'.
    target_modules: Linear layers to adapt (None: per-method default, see DEFAULT_TARGETS).
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
            from .methods import METHOD_CONFIGS

            if self.method in METHOD_CONFIGS:
                raise ValueError(f"AdapterConfig.method={self.method!r}: that method has its own config, "
                                 f"{METHOD_CONFIGS[self.method].__name__} (AdapterConfig.from_dict picks it)")
            raise ValueError(f"AdapterConfig.method must be one of {METHODS + tuple(METHOD_CONFIGS)}, "
                             f"got {self.method!r}")
        _check_int(self.rank, "rank", 1)
        _check_int(self.num_bases, "num_bases", 1)
        _check_int(self.seed, "seed", 0)
        if self.alpha is not None:
            _check_number(self.alpha, "alpha", 0.0, math.inf, True, True)
        self._resolve_placement()
        if self.target_modules is None:
            self.target_modules = list(DEFAULT_TARGETS.get((self.method, self.placement), []))
        self.target_modules = _as_pattern_list(self.target_modules, "target_modules")
        self.exclude_modules = _as_pattern_list(self.exclude_modules, "exclude_modules")
        self.trainable_modules = _as_pattern_list(self.trainable_modules, "trainable_modules")
        if self.method != "none" and not self.target_modules:
            raise ValueError(f"AdapterConfig.target_modules is empty for method={self.method!r}")
        _check_number(self.sade_weight, "sade_weight", 0.0, math.inf, False, True)
        _check_number(self.dropout, "dropout", 0.0, 1.0, False, True)
        _check_number(self.scale, "scale", -math.inf, math.inf, True, True)
        if not isinstance(self.coto, bool):
            raise ValueError(f"AdapterConfig.coto must be true or false, got {self.coto!r}")
        if self.coto and self.method == "none":
            raise ValueError("AdapterConfig.coto=True needs adapters, but method='none' adds none")
        _check_number(self.coto_p_start, "coto_p_start", 0.0, 1.0, False, False)
        _check_number(self.coto_ramp_fraction, "coto_ramp_fraction", 0.0, 1.0, True, False)

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
        if not isinstance(d, dict):
            raise ValueError(f"adapter config must be a mapping, got {type(d).__name__}")
        from .methods import METHOD_CONFIGS

        if d.get("method") in METHOD_CONFIGS:
            return METHOD_CONFIGS[d["method"]].from_dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown adapter config key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "AdapterConfig":
        return cls.from_dict(json.loads(text))
