"""Common wrapper of an `nn.Linear`: holds `base_layer`, runs a flat disabled / merged / active forward.

Following Hugging Face peft, adapters wrap the frozen layer instead of subclassing it. A subclass
supplies `adapted_forward(x)` (the forward with the adapter on) and `merge()` / `unmerge()`.
CoTo switches a wrapper off in training through `coto_active`; an off wrapper runs only the base
layer, so its own parameters take part in no computation and receive no gradient.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn


class AdapterLayer(nn.Module):
    """Base of LoRALinear and CLoRALinear. Not used directly."""

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise ValueError(f"base_layer must be an nn.Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.merged = False
        self.disabled = False
        self.coto_active = True  # set by CoToScheduler; ignored in eval mode

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self):
        return self.base_layer.bias

    def adapter_is_on(self) -> bool:
        """Whether the (unmerged) adapter contributes: always in eval, per CoTo draw in training."""
        return not self.disabled and (not self.training or self.coto_active)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            if self.disabled:
                raise RuntimeError("adapter is merged into the weight: unmerge before disabling it")
            if self.training and torch.is_grad_enabled():
                self._warn_merged_training()
            return self.base_layer(x)
        if not self.adapter_is_on():
            return self.base_layer(x)
        return self.adapted_forward(x)

    def _warn_merged_training(self) -> None:
        """Training through a merged adapter updates only the merged weight (when trainable), never the
        adapter: say so once per layer instead of training the wrong parameters in silence."""
        if getattr(self, "_warned_merged", False):
            return
        own = [p for n, p in self.named_parameters() if not n.startswith("base_layer.")]
        if not any(p.requires_grad for p in own):
            return
        self._warned_merged = True
        warnings.warn(f"{type(self).__name__} is merged into its base weight: in training its adapter parameters "
                      "get no gradient; call unmerge_adapters(model) before training", UserWarning, stacklevel=3)

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def merge(self) -> None:
        """Write the adapter into base_layer.weight (no-op when already merged)."""
        if self.merged:
            return
        new_weight = self.merged_weight()
        if not torch.isfinite(new_weight).all():
            raise ValueError(f"{type(self).__name__}: merged weight has NaN/Inf, base weight left untouched")
        with torch.no_grad():
            self.base_layer.weight.copy_(new_weight)
        self.merged = True

    def unmerge(self) -> None:
        """Undo merge() (no-op when not merged)."""
        if not self.merged:
            return
        with torch.no_grad():
            self.base_layer.weight.copy_(self.unmerged_weight())
        self.merged = False

    def merged_weight(self) -> torch.Tensor:
        """Default (weight placement): W + dW, computed in float64 then cast. (out, in)."""
        w = self.base_layer.weight
        return (w.double() + self.delta_weight().double()).to(w.dtype)

    def unmerged_weight(self) -> torch.Tensor:
        w = self.base_layer.weight
        return (w.double() - self.delta_weight().double()).to(w.dtype)

    def extra_repr(self) -> str:
        return f"merged={self.merged}, disabled={self.disabled}"
