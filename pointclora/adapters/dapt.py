"""DAPT (Zhou et al., "Dynamic Adapter Meets Prompt Tuning", CVPR 2024): config and adapter parts.

Per block, beside the frozen attention and MLP: a dynamic adapter parallel to the MLP,
    a(x) = relu(scale(LN(x))) * up(dropout(gelu(down(LN(x))))),   (B, T, C) -> (B, T, C),
whose GELU-ed token mean becomes one new prompt token inserted after [cls] (so block i outputs
1 + i + G tokens), and learnable scale-and-shift factors ``x * gamma + beta`` (official name
"tfts") on the qkv, proj, fc1, fc2 outputs, the two norms' outputs and the prompt. The model
variant is ``pointclora.models.dapt.PointMAEDAPT``. Official defaults: rank 64, adapter dropout
0.2, features = [cls] + mean of prompts + max of patches (cfgs/finetune_scan_hardest_dapt.yaml).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .methods import MethodConfig, check_choice, check_positive_int, check_rate, register_method

TOKEN_CHOICES = {"class_token": ("use", "None"), "prompt_token": ("mean", "max", "None"),
                 "patch_token": ("max", "None")}


@dataclass
class DAPTConfig(MethodConfig):
    """DAPT on Point-MAE. Fields left None take the model's value or the official default.

    rank: adapter bottleneck (official 64; 72 for ModelNet40).
    drop_adapter_rate: dropout inside the adapter (official 0.2 hardest, 0.5 OBJ_BG, 0 OBJ_ONLY).
    class_token / prompt_token / patch_token: which pooled tokens feed the head ('use'/'None';
        'mean'/'max'/'None'; 'max'/'None'); at least one must be on.
    """

    method: str = "dapt"
    rank: Optional[int] = None
    drop_adapter_rate: Optional[float] = None
    class_token: Optional[str] = None
    prompt_token: Optional[str] = None
    patch_token: Optional[str] = None

    OFFICIAL = {"rank": 64, "drop_adapter_rate": 0.2, "class_token": "use", "prompt_token": "mean",
                "patch_token": "max"}
    COTO_NOTE = ("its prompts are produced by the adapters and change the token count every later block and the "
                 "head read, and its scale-and-shift factors have no off state of their own")
    MERGE_NOTE = ("DAPT cannot be merged into the backbone: its adapter output is scaled per token by "
                  "relu(scale(LN(x))) (input-dependent) and it inserts prompt tokens")

    def validate_fields(self) -> None:
        check_positive_int(self, "rank")
        check_rate(self, "drop_adapter_rate")
        for key, choices in TOKEN_CHOICES.items():
            check_choice(self, key, choices)
        if all(getattr(self, k) == "None" for k in TOKEN_CHOICES):
            raise ValueError("DAPTConfig: class_token, prompt_token and patch_token are all 'None'; the head needs one")


register_method("dapt", DAPTConfig, "PointMAEDAPT")


def init_scale_shift(dim: int, generator: Optional[torch.Generator] = None) -> Tuple[nn.Parameter, nn.Parameter]:
    """Official tfts init: gamma ~ N(1, 0.02), beta ~ N(0, 0.02), each (dim,)."""
    gamma = nn.Parameter(torch.empty(dim))
    beta = nn.Parameter(torch.empty(dim))
    reset_scale_shift(gamma, beta, generator)
    return gamma, beta


def reset_scale_shift(gamma: torch.Tensor, beta: torch.Tensor, generator: Optional[torch.Generator] = None) -> None:
    with torch.no_grad():
        gamma.copy_(1.0 + 0.02 * torch.randn(gamma.shape, generator=generator))
        beta.copy_(0.02 * torch.randn(beta.shape, generator=generator))


def scale_shift(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """x: (..., C) -> x * gamma + beta, gamma / beta: (C,)."""
    if x.shape[-1] != gamma.shape[0]:
        raise ValueError(f"scale-shift of width {gamma.shape[0]} applied to a tensor of shape {tuple(x.shape)}")
    return x * gamma + beta


class DAPTAdapter(nn.Module):
    """The dynamic adapter (official ``Adapter`` with its layer norm on the input), (B, T, C) -> (B, T, C).

    Keys: ``adapter_layer_norm_before``, ``scale`` (C -> 1), ``down_proj`` (C -> r), ``up_proj`` (r -> C).
    """

    def __init__(self, dim: int, rank: int, dropout: float = 0.0):
        super().__init__()
        self.adapter_layer_norm_before = nn.LayerNorm(dim)
        self.scale = nn.Linear(dim, 1)
        self.down_proj = nn.Linear(dim, rank)
        self.non_linear_func = nn.GELU()
        self.up_proj = nn.Linear(rank, dim)
        self.dropout = float(dropout)
        self.reset_parameters()

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Official init: Kaiming-uniform (a = sqrt 5) down / scale weights, zero up weight, zero biases."""
        with torch.no_grad():
            for layer in (self.down_proj, self.scale):
                bound = 1.0 / math.sqrt(layer.in_features)  # kaiming_uniform_(a=sqrt(5)) bound
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
                nn.init.zeros_(layer.bias)
            nn.init.zeros_(self.up_proj.weight)
            nn.init.zeros_(self.up_proj.bias)
            nn.init.ones_(self.adapter_layer_norm_before.weight)
            nn.init.zeros_(self.adapter_layer_norm_before.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C)."""
        x = self.adapter_layer_norm_before(x)
        scale = F.relu(self.scale(x))  # (B, T, 1): the per-token dynamic scale
        down = F.dropout(self.non_linear_func(self.down_proj(x)), p=self.dropout, training=self.training)
        return self.up_proj(down) * scale

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}"
