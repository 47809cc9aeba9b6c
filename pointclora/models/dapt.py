"""Point-MAE with DAPT (official ``PointTransformer_DAPT`` of LMD0311/DAPT, models/DAPT.py).

Differences from Point-MAE: the positional embedding is added once, before the first block (not
before every block); every block inserts one prompt token after [cls] (block i outputs 1 + i + G
tokens); scale-and-shift factors follow the patch encoder, the attention / MLP projections, the
norms and the prompts; the head reads [cls], the pooled prompts and the max over the patches
(its input is 384 x the number of pooled parts wide). Attribute names are the official ones
(``blocks.blocks.{i}.Adapter_MLP.down_proj``, ``.attn.tfts_gamma_1``, ...), so official
fine-tuned checkpoints load strictly. The adapter parts are in ``pointclora.adapters.dapt``.
"""
from typing import Dict, List

import torch
from torch import nn

from ..adapters.dapt import TOKEN_CHOICES, DAPTAdapter, init_scale_shift, reset_scale_shift, scale_shift
from ..adapters.methods import seeded
from .layers import Attention, DropPath, Mlp
from .variant import PointMAEVariant

SCALE_SHIFT = "tfts"  # official name of the scale-and-shift factors


class DAPTAttention(Attention):
    """Attention with scale-shift after qkv (3C) and after proj (C)."""

    def __init__(self, dim: int, num_heads: int, attention: str = "explicit"):
        super().__init__(dim, num_heads, attention=attention)
        self.tfts_gamma_1, self.tfts_beta_1 = init_scale_shift(dim * 3)
        self.tfts_gamma_2, self.tfts_beta_2 = init_scale_shift(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C)."""
        B, T, C = x.shape
        qkv = scale_shift(self.qkv(x), self.tfts_gamma_1, self.tfts_beta_1)  # (B, T, 3C)
        q, k, v = qkv.reshape(B, T, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = self.attend(q, k, v).transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.proj_drop(scale_shift(self.proj(x), self.tfts_gamma_2, self.tfts_beta_2))


class DAPTMlp(Mlp):
    """MLP with scale-shift after fc1 (hidden) and after fc2 (C)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(dim, hidden)
        self.tfts_gamma_1, self.tfts_beta_1 = init_scale_shift(hidden)
        self.tfts_gamma_2, self.tfts_beta_2 = init_scale_shift(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(scale_shift(self.fc1(x), self.tfts_gamma_1, self.tfts_beta_1)))
        return self.drop(scale_shift(self.fc2(x), self.tfts_gamma_2, self.tfts_beta_2))


class DAPTBlock(nn.Module):
    """Pre-norm block + dynamic adapter beside the MLP + one new prompt token: (B, T, C) -> (B, T + 1, C)."""

    def __init__(self, dim: int, num_heads: int, rank: int, adapter_drop: float, drop_path: float,
                 attention: str = "explicit"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = DAPTMlp(dim, dim * 4)
        self.attn = DAPTAttention(dim, num_heads, attention)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.Adapter_MLP = DAPTAdapter(dim, rank, adapter_drop)
        self.non_linear_func = nn.GELU()
        self.tfts_gamma_1, self.tfts_beta_1 = init_scale_shift(dim)
        self.tfts_gamma_2, self.tfts_beta_2 = init_scale_shift(dim)
        self.tfts_gamma_3, self.tfts_beta_3 = init_scale_shift(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(scale_shift(self.norm1(x), self.tfts_gamma_1, self.tfts_beta_1)))
        h = scale_shift(self.norm2(x), self.tfts_gamma_2, self.tfts_beta_2)
        adapted = self.Adapter_MLP(h)  # (B, T, C)
        x = x + self.drop_path2(self.mlp(h) + adapted)
        prompt = self.non_linear_func(adapted).mean(dim=1, keepdim=True)  # (B, 1, C)
        prompt = scale_shift(prompt, self.tfts_gamma_3, self.tfts_beta_3)
        return torch.cat([x[:, :1], prompt, x[:, 1:]], dim=1)  # (B, T + 1, C): [cls], new prompt, rest


class DAPTEncoder(nn.Module):
    """Stack of DAPT blocks (no positional embedding inside: DAPT adds it once before)."""

    def __init__(self, dim: int, num_heads: int, rates: List[float], rank: int, adapter_drop: float,
                 attention: str = "explicit"):
        super().__init__()
        self.blocks = nn.ModuleList([DAPTBlock(dim, num_heads, rank, adapter_drop, r, attention) for r in rates])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class PointMAEDAPT(PointMAEVariant):
    """Point-MAE transformer with DAPT. Keyword arguments are the official model keys."""

    METHOD = "dapt"

    def __init__(self, *, trans_dim: int, depth: int, drop_path_rate: float, cls_dim: int, num_heads: int,
                 group_size: int, num_group: int, encoder_dims: int, rank: int = 64,
                 drop_adapter_rate: float = 0.0, class_token: str = "use", prompt_token: str = "mean",
                 patch_token: str = "max", drop_rate: float = 0.0, fps_skip_near_origin: bool = True,
                 attention: str = "explicit"):
        for key, value in (("class_token", class_token), ("prompt_token", prompt_token), ("patch_token", patch_token)):
            if value not in TOKEN_CHOICES[key]:
                raise ValueError(f"PointTransformer_DAPT {key} must be one of {list(TOKEN_CHOICES[key])}, got {value!r}")
        if drop_rate != 0.0:
            raise ValueError(f"PointTransformer_DAPT drop_rate: the official model ignores it; only 0 is "
                             f"reproduced, got {drop_rate!r}")
        if not 0.0 <= drop_adapter_rate < 1.0:
            raise ValueError(f"PointTransformer_DAPT drop_adapter_rate must be in [0, 1), got {drop_adapter_rate!r}")
        self.rank, self.drop_adapter_rate = int(rank), float(drop_adapter_rate)
        self.class_token, self.prompt_token, self.patch_token = class_token, prompt_token, patch_token
        self.pooled = [k for k, v in (("class", class_token), ("prompt", prompt_token), ("patch", patch_token))
                       if v != "None"]
        if not self.pooled:
            raise ValueError("PointTransformer_DAPT: class_token, prompt_token and patch_token are all 'None'")
        super().__init__(trans_dim=trans_dim, depth=depth, drop_path_rate=drop_path_rate, cls_dim=cls_dim,
                         num_heads=num_heads, group_size=group_size, num_group=num_group,
                         encoder_dims=encoder_dims, fps_skip_near_origin=fps_skip_near_origin, attention=attention)
        self.tfts_gamma_1, self.tfts_beta_1 = init_scale_shift(trans_dim)  # after the patch encoder
        self.tfts_gamma_2, self.tfts_beta_2 = init_scale_shift(trans_dim)  # after the final norm
        self.reset_adapter_parameters()

    def feature_dim(self) -> int:
        return self.trans_dim * len(self.pooled)

    def _build_blocks(self, rates: list) -> nn.Module:
        return DAPTEncoder(self.trans_dim, self.num_heads, rates, self.rank, self.drop_adapter_rate, self.attention)

    def reset_adapter_parameters(self, seed: int = 0) -> None:
        """Official module init of the adapters and scale-shift factors (PointMAE's init ran over them)."""
        gen = seeded(seed)
        for module in self.modules():
            if isinstance(module, DAPTAdapter):
                module.reset_parameters(gen)
        params = dict(self.named_parameters())
        for name in sorted(n for n in params if f"{SCALE_SHIFT}_gamma_" in n):
            reset_scale_shift(params[name], params[name.replace("_gamma_", "_beta_")], gen)

    # --- the interface of pointclora.adapters.methods
    def method_fields(self) -> Dict[str, object]:
        return dict(rank=self.rank, drop_adapter_rate=self.drop_adapter_rate, class_token=self.class_token,
                    prompt_token=self.prompt_token, patch_token=self.patch_token)

    def adapter_parameter_names(self) -> List[str]:
        """The official freezing rule without its 'cls' part: names holding 'tfts' or 'Adapter'."""
        return [n for n, _ in self.named_parameters() if SCALE_SHIFT in n or "Adapter" in n]

    # --- forward
    def encode_patches(self, neighborhood: torch.Tensor) -> torch.Tensor:
        """neighborhood: (B, G, K, 3) -> patch tokens (B, G, C), scaled and shifted after the encoder."""
        return scale_shift(super().encode_patches(neighborhood), self.tfts_gamma_1, self.tfts_beta_1)

    def forward_tokens(self, points: torch.Tensor) -> torch.Tensor:
        """points: (B, N, 3) -> tokens (B, 1 + depth + G, C): [cls], prompts (newest first), patches."""
        x, pos, _ = self.embed(points)  # (B, 1+G, C) each
        x = self.blocks(x + pos)
        return scale_shift(self.norm(x), self.tfts_gamma_2, self.tfts_beta_2)

    def forward_features(self, points: torch.Tensor) -> torch.Tensor:
        """points: (B, N, 3) -> (B, C * number of pooled parts): [cls], prompts pooled, max over patches."""
        x = self.forward_tokens(points)
        G = self.num_group
        parts = []
        if self.class_token != "None":
            parts.append(x[:, 0])
        if self.prompt_token == "mean":
            parts.append(x[:, 1:-G].mean(dim=1))
        elif self.prompt_token == "max":
            parts.append(x[:, 1:-G].max(dim=1)[0])
        if self.patch_token == "max":
            parts.append(x[:, -G:].max(dim=1)[0])
        return torch.cat(parts, dim=-1)
