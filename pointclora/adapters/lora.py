"""LoRA (Hu et al., 2021): y = base(x) + (alpha / r) * B(A(dropout(x))), A Kaiming-uniform, B = 0."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import AdapterLayer


class LoRALinear(AdapterLayer):
    """Wraps an nn.Linear (in -> out) with lora_A: (r, in) and lora_B: (out, r)."""

    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int,
        scaling: float,
        dropout: float = 0.0,
        generator: Optional[torch.Generator] = None,
    ):
        super().__init__(base_layer)
        w = base_layer.weight
        self.rank = rank
        self.scaling = scaling
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, dtype=w.dtype, device=w.device))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        # Same init as nn.Linear / peft: Kaiming-uniform with a = sqrt(5); B = 0 so the model starts as the backbone.
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            a = torch.rand(self.lora_A.shape, generator=generator, dtype=torch.float32)
            self.lora_A.copy_((a * 2 - 1) * bound)
            self.lora_B.zero_()

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) -> (..., out)."""
        h = F.linear(self.lora_dropout(x), self.lora_A)  # (..., r)
        return self.base_layer(x) + F.linear(h, self.lora_B) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """(out, in) update added to the weight by merge()."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scaling={self.scaling}, " + super().extra_repr()
