"""Transformer layers of Point-MAE / Point-BERT: drop path, MLP, attention, pre-norm block,
the encoder that adds the positional embedding before every block, and weight init.

Attribute names follow the official code (Pang et al., models/Point_MAE.py) so that state-dict
keys match: ``blocks.blocks.{i}.attn.qkv``, ``.attn.proj``, ``.mlp.fc1``, ``.mlp.fc2``,
``.norm1``, ``.norm2``.
"""
from typing import List, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

# How attention is computed: "explicit" is the official code's softmax(q k^T * scale) v (the
# default: it keeps the held-out equivalence with the official models); "sdpa" calls
# torch.nn.functional.scaled_dot_product_attention (flash / memory-efficient kernels on GPU; the
# same function, within float rounding: 1e-5 in float32 on CPU, tested).
ATTENTION = ("explicit", "sdpa")


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (timm semantics): x: (B, ...) -> (B, ...).

    Each sample's residual branch is zeroed with probability ``drop_prob`` and the kept ones
    are scaled by 1 / (1 - drop_prob) so the expectation is unchanged.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)  # one draw per sample
    mask = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0:
        mask.div_(keep_prob)
    return x * mask


class DropPath(nn.Module):
    """Module wrapper of :func:`drop_path` (no parameters, so no state-dict keys)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout on (B, N, C) tokens."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (no bias, as the official code).

    ``attention`` is one of :data:`ATTENTION` (config key ``model.attention``); the parameters and
    state-dict keys are the same for both.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 attention: str = "explicit"):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"trans_dim ({dim}) must be divisible by num_heads ({num_heads})")
        if attention not in ATTENTION:
            raise ValueError(f"model.attention must be one of {ATTENTION}, got {attention!r}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.attention = attention
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C)."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)  # (B, N, 3, H, C/H)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, C/H)
        x = self.attend(q, k, v).transpose(1, 2).reshape(B, N, C)  # (B, N, C)
        return self.proj_drop(self.proj(x))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v: (B, H, N, C/H) -> softmax(q k^T * scale) v, (B, H, N, C/H), the way ``attention`` says."""
        if self.attention == "sdpa":
            drop = self.attn_drop.p if self.training else 0.0
            return F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale)
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, N, N), same order of ops as official
        return self.attn_drop(attn.softmax(dim=-1)) @ v

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, attention={self.attention!r}"


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 attention: str = "explicit"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        # official code: Identity when the rate is 0 (keeps the module tree identical)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.attn = Attention(dim, num_heads, attn_drop=attn_drop, proj_drop=drop, attention=attention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def drop_path_schedule(drop_path_rate: float, depth: int) -> List[float]:
    """Per-block drop-path rates ramped linearly from 0 to ``drop_path_rate`` (official dpr)."""
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    # built on the CPU explicitly so models can be constructed under torch.device('meta')
    return torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()


class TransformerEncoder(nn.Module):
    """Stack of blocks; the positional embedding is added before every block (Point-BERT style)."""

    def __init__(self, embed_dim: int, depth: int, num_heads: int, drop_path_rate: Union[float, Sequence[float]] = 0.0,
                 attention: str = "explicit"):
        super().__init__()
        rates = list(drop_path_rate) if isinstance(drop_path_rate, (list, tuple)) else [drop_path_rate] * depth
        if len(rates) != depth:
            raise ValueError(f"drop_path_rate has {len(rates)} entries for depth {depth}")
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, drop_path=r, attention=attention) for r in rates])

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x, pos: (B, T, C) -> (B, T, C)."""
        for block in self.blocks:
            x = block(x + pos)
        return x

    def forward_intermediate(self, x: torch.Tensor, pos: torch.Tensor, indices: Sequence[int]) -> List[torch.Tensor]:
        """Outputs of the blocks listed in ``indices`` (part segmentation fetches 3, 7, 11)."""
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x + pos)
            if i in indices:
                out.append(x)
        return out


class TransformerDecoder(nn.Module):
    """Point-MAE decoder: blocks with pos added before each, norm of the last ``return_token_num``."""

    def __init__(self, embed_dim: int, depth: int, num_heads: int, drop_path_rate: Union[float, Sequence[float]] = 0.1,
                 attention: str = "explicit"):
        super().__init__()
        rates = list(drop_path_rate) if isinstance(drop_path_rate, (list, tuple)) else [drop_path_rate] * depth
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, drop_path=r, attention=attention) for r in rates])
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Identity()
        self.apply(xavier_init_weights)  # official decoder init

    def forward(self, x: torch.Tensor, pos: torch.Tensor, return_token_num: int) -> torch.Tensor:
        """x, pos: (B, T, C) -> (B, return_token_num, C), the last tokens (the mask tokens)."""
        for block in self.blocks:
            x = block(x + pos)
        return self.head(self.norm(x[:, -return_token_num:]))


def trunc_normal_init_weights(m: nn.Module) -> None:
    """Official encoder init: trunc-normal(0.02) Linear/Conv1d weights, zero biases, unit LayerNorm."""
    if isinstance(m, (nn.Linear, nn.Conv1d)):
        nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)  # timm's bounds are absolute: +-2
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def xavier_init_weights(m: nn.Module) -> None:
    """Official decoder init: xavier-uniform Linear weights, zero biases, unit LayerNorm."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
