"""Point-MAE with PointGST (official ``PointTransformer_PGST`` of jerryfeng2003/PointGST,
models/PointTransformer.py).

The backbone is Point-MAE's (positional embedding before every block, same head); each block
adds a spectral adapter (``blocks.blocks.{i}.gft_adapter``) fed with the post-attention tokens,
whose output joins the residual after the MLP. The model computes, once per forward, the global
graph basis of the patch centres (B, G, G), their z-order and the local bases of windows of
``local`` consecutive centres along it (B, G/local, local, local). Key names are the official
ones, so official fine-tuned checkpoints load strictly. Adapter parts: ``pointclora.adapters.pointgst``.
"""
from typing import Dict, List, Tuple

import torch
from torch import nn

from ..adapters import pointgst as gst
from ..adapters.methods import seeded
from .layers import Block
from .variant import PointMAEVariant


class PGSTBlock(Block):
    """Point-MAE block + spectral adapter: x + attn, then + mlp + adapter(x after attention)."""

    def __init__(self, dim: int, num_heads: int, rank: int, drop_path: float, attention: str = "explicit"):
        super().__init__(dim, num_heads, drop_path=drop_path, attention=attention)
        self.gft_adapter = gst.SpectralAdapter(dim, rank)

    def forward(self, x: torch.Tensor, u: torch.Tensor, sub_u: torch.Tensor,
                order: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        t = self.gft_adapter(x, u, sub_u, order) if self.gft_adapter.is_on() else None  # CoTo may skip it
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x if t is None else x + t


class PGSTEncoder(nn.Module):
    """Stack of PGST blocks; the positional embedding is added before every block (as Point-MAE)."""

    def __init__(self, dim: int, num_heads: int, rates: List[float], rank: int, attention: str = "explicit"):
        super().__init__()
        self.blocks = nn.ModuleList([PGSTBlock(dim, num_heads, rank, r, attention) for r in rates])

    def forward(self, x, pos, u, sub_u, order):
        for block in self.blocks:
            x = block(x + pos, u, sub_u, order)
        return x


class PointMAEPGST(PointMAEVariant):
    """Point-MAE transformer with PointGST. Keyword arguments are the official model keys (+ basis)."""

    METHOD = "pointgst"

    def __init__(self, *, trans_dim: int, depth: int, drop_path_rate: float, cls_dim: int, num_heads: int,
                 group_size: int, num_group: int, encoder_dims: int, rank: int = 36, local: int = 32,
                 basis: str = "official", tsne: bool = False, fps_skip_near_origin: bool = True,
                 attention: str = "explicit"):
        if local < 1 or num_group % local:
            raise ValueError(f"PointTransformer_PGST local={local} must divide num_group={num_group}")
        if basis not in gst.BASES:
            raise ValueError(f"PointTransformer_PGST basis must be one of {list(gst.BASES)}, got {basis!r}")
        if tsne:
            raise ValueError("PointTransformer_PGST tsne=True (logits and features) is not supported: "
                             "call forward_features for the features")
        self.rank, self.local, self.basis = int(rank), int(local), basis
        super().__init__(trans_dim=trans_dim, depth=depth, drop_path_rate=drop_path_rate, cls_dim=cls_dim,
                         num_heads=num_heads, group_size=group_size, num_group=num_group,
                         encoder_dims=encoder_dims, fps_skip_near_origin=fps_skip_near_origin, attention=attention)
        self.reset_adapter_parameters()

    def _build_blocks(self, rates: list) -> nn.Module:
        return PGSTEncoder(self.trans_dim, self.num_heads, rates, self.rank, self.attention)

    def reset_adapter_parameters(self, seed: int = 0) -> None:
        """Official module init of the spectral adapters (PointMAE's init ran over them)."""
        gen = seeded(seed)
        for module in self.modules():
            if isinstance(module, gst.SpectralAdapter):
                module.reset_parameters(gen)

    # --- the interface of pointclora.adapters.methods
    def method_fields(self) -> Dict[str, object]:
        return dict(rank=self.rank, local=self.local, basis=self.basis)

    def adapter_parameter_names(self) -> List[str]:
        """The official freezing rule without its 'cls' part: names holding 'adapt'."""
        return [n for n, _ in self.named_parameters() if "adapt" in n]

    # --- forward
    def spectral_inputs(self, center: torch.Tensor):
        """center: (B, G, 3) -> global basis (B, G, G), local bases (B, G/local, local, local), z-order."""
        B, G, _ = center.shape
        u = gst.graph_basis(center, self.basis)  # looked up at call time: tests may substitute it
        order = gst.zorder(center, stable=self.basis == "stable")
        windows = G // self.local
        sub = gst.gather_tokens(center, order[0]).reshape(B * windows, self.local, 3)  # (B*W, local, 3)
        sub_u = gst.graph_basis(sub, self.basis).reshape(B, windows, self.local, self.local)
        return u, sub_u, order

    def forward_tokens(self, points: torch.Tensor) -> torch.Tensor:
        """points: (B, N, 3) -> normalised tokens (B, 1 + G, trans_dim), token 0 is [cls]."""
        x, pos, center = self.embed(points)  # (B, 1+G, C), (B, 1+G, C), (B, G, 3)
        return self.norm(self.blocks(x, pos, *self.spectral_inputs(center)))
