"""PointGST (Liang et al., "Parameter-Efficient Fine-Tuning in Spectral Domain for Point Cloud
Learning", TPAMI 2025): config, graph basis, z-order and the spectral adapter.

Per block, beside the MLP: h = down(x) (B, T, r); the patch tokens' h is taken to the spectral
domain of the patch-centre graph twice, globally (basis U: (B, G, G)) and in local z-ordered
windows of ``local`` centres (sub_U: (B, G/local, local, local)); there a shared r x r Linear adds
silu(adapt1(LN(f))) to f; both come back and are added to silu(h); up() (r -> C) gives the
block's extra residual. The model variant is ``pointclora.models.pointgst.PointMAEPGST``.
Official defaults: rank 36, local 32 (cfgs/mae/finetune_scan_hardest_pgst.yaml).

``graph_basis`` computes both bases (the model looks it up at call time, so tests can put stored
bases in its place). ``basis: official`` reproduces the official ``get_basis``: the Laplacian of
1 / (d / d_min + I) where d_min is the smallest positive entry of ``torch.cdist`` over the whole
batch, which for more than 25 points is rounding noise on the diagonal (cdist's matmul path), so
the eigenvectors depend on the batch, the dtype and the thread count. ``basis: stable`` uses
exact distances, each cloud's own smallest distance, float64 ``eigh`` and a sign convention (the
largest-magnitude entry of every eigenvector positive).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

from .methods import MethodConfig, check_choice, check_positive_int, register_method

BASES = ("official", "stable")


@dataclass
class PointGSTConfig(MethodConfig):
    """PointGST on Point-MAE. Fields left None take the model's value or the official default.

    rank: width r of the spectral adapter (official 36).
    local: centres per local window of the local basis (official 32; must divide num_group).
    basis: 'official' (reproduces the released code and checkpoints) or 'stable' (see module doc).
    """

    method: str = "pointgst"
    rank: Optional[int] = None
    local: Optional[int] = None
    basis: Optional[str] = None

    OFFICIAL = {"rank": 36, "local": 32, "basis": "official"}
    MERGE_NOTE = ("PointGST cannot be merged into the backbone: its adapter works on the graph spectrum of "
                  "each cloud's patch centres (a basis computed from the input) with LayerNorm and SiLU")

    def validate_fields(self) -> None:
        check_positive_int(self, "rank")
        check_positive_int(self, "local")
        check_choice(self, "basis", BASES)


register_method("pointgst", PointGSTConfig, "PointMAEPGST")


def _official_basis(xyz: torch.Tensor) -> torch.Tensor:
    """The released get_basis, op for op (its rounding decides the eigenvectors)."""
    n = xyz.shape[-2]
    d = torch.cdist(xyz, xyz)  # (B, n, n); matmul path for n > 25: diagonal is not exactly 0
    d_min = torch.min(d[d > 0], dim=-1, keepdim=True).values  # (1,): over the whole batch
    adj = 1 / (d / d_min + torch.eye(n, device=xyz.device, dtype=xyz.dtype).unsqueeze(0))
    deg_inv_sqrt = torch.diag_embed(torch.rsqrt(adj.sum(dim=-1) + 1e-6))  # (B, n, n)
    lap = torch.eye(n, device=xyz.device, dtype=xyz.dtype) - deg_inv_sqrt @ adj @ deg_inv_sqrt
    return torch.linalg.eigh(lap)[1]  # columns: eigenvectors, ascending eigenvalues


def _stable_basis(xyz: torch.Tensor) -> torch.Tensor:
    """Exact distances, per-cloud scale, float64 eigh, deterministic signs."""
    x = xyz.double()
    n = x.shape[-2]
    d = (x.unsqueeze(-2) - x.unsqueeze(-3)).norm(dim=-1)  # (B, n, n), exact zero diagonal
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    positive = torch.where(d > 0, d, torch.full_like(d, float("inf")))
    d_min = positive.amin(dim=(-2, -1), keepdim=True)  # (B, 1, 1): each cloud's own scale
    d_min = torch.where(torch.isfinite(d_min), d_min, torch.ones_like(d_min))  # all points equal
    adj = 1 / (d / d_min + eye).clamp(min=1.0)  # duplicated points weigh like the nearest pair
    deg_inv_sqrt = adj.sum(dim=-1).rsqrt()  # (B, n)
    lap = eye - deg_inv_sqrt.unsqueeze(-1) * adj * deg_inv_sqrt.unsqueeze(-2)
    u = torch.linalg.eigh(lap)[1]  # (B, n, n)
    peak = u.gather(-2, u.abs().argmax(dim=-2, keepdim=True))  # (B, 1, n): largest-|.| entry per column
    return (u * torch.where(peak < 0, -1.0, 1.0)).to(xyz.dtype)


def graph_basis(xyz: torch.Tensor, basis: str = "official") -> torch.Tensor:
    """Graph Fourier basis of point sets. xyz: (B, n, 3) float -> U: (B, n, n), eigenvectors as columns.

    basis: 'official' (the released code; batch-dependent, see the module docstring) or 'stable'.
    """
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"graph_basis: xyz must have shape (B, n, 3), got {tuple(xyz.shape)}")
    if basis not in BASES:
        raise ValueError(f"graph_basis: basis must be one of {list(BASES)}, got {basis!r}")
    return _official_basis(xyz) if basis == "official" else _stable_basis(xyz)


def zorder_keys(xyz: torch.Tensor, scale: float = 100.0, bits: int = 16) -> torch.Tensor:
    """Morton keys of (B, G, 3) centres quantised by truncation of xyz * scale: (B, G) int64.

    As the official code: coordinate y takes the highest bit of every triple, then x, then z; negative
    coordinates use their two's-complement bits (octree xyz2key of O-CNN, depth 16).
    """
    q = (xyz * scale).long()  # (B, G, 3), truncation towards zero
    first, second, third = q[..., 1], q[..., 0], q[..., 2]
    key = torch.zeros_like(first)
    for i in range(bits):
        key |= ((first >> i) & 1) << (3 * i + 2)
        key |= ((second >> i) & 1) << (3 * i + 1)
        key |= ((third >> i) & 1) << (3 * i)
    return key


def zorder(xyz: torch.Tensor, stable: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """(order, inverse): (B, G) int64 permutations sorting the centres along the z-order curve."""
    key = zorder_keys(xyz)
    order = torch.sort(key, stable=True)[1] if stable else torch.sort(key)[1]
    return order, torch.sort(order)[1]


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x: (B, G, C), idx: (B, G) -> x[b, idx[b]] (B, G, C)."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class SpectralAdapter(nn.Module):
    """The official ``PCSA``: (B, T, C) tokens + bases -> (B, T, C) residual.

    Keys: ``down`` (C -> r), ``up`` (r -> C), ``adapt1`` (r -> r, shared by both spectra),
    ``norm_ly1`` / ``norm_ly2`` (LayerNorm(r) of the global / local spectrum).
    """

    supports_coto = True  # CoTo switches it off per block (its residual is then absent)

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.rank = rank
        self.norm_ly1 = nn.LayerNorm(rank)
        self.norm_ly2 = nn.LayerNorm(rank)
        self.act = nn.SiLU()
        self.down = nn.Linear(dim, rank)
        self.up = nn.Linear(rank, dim)
        self.adapt1 = nn.Linear(rank, rank)
        self.coto_active = True
        self.reset_parameters()

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Official init: xavier-uniform down weight (nn.Linear's bias init), zero up and adapt1."""
        with torch.no_grad():
            fan_in, fan_out = self.down.in_features, self.down.out_features
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            self.down.weight.copy_((torch.rand(self.down.weight.shape, generator=generator) * 2 - 1) * bound)
            self.down.bias.copy_((torch.rand(self.down.bias.shape, generator=generator) * 2 - 1) / fan_in ** 0.5)
            for layer in (self.up, self.adapt1):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            for norm in (self.norm_ly1, self.norm_ly2):
                nn.init.ones_(norm.weight)
                nn.init.zeros_(norm.bias)

    def is_on(self) -> bool:
        return not self.training or self.coto_active

    def _spectral(self, z: torch.Tensor, u: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """z: (..., n, r) in the node domain, u: (..., n, n) -> (..., n, r) after the spectral update."""
        f = u @ z  # the released code's transform (U, not U^T: kept to reproduce its checkpoints)
        f = f + self.act(self.adapt1(norm(f)))
        return u.transpose(-2, -1) @ f

    def forward(self, x: torch.Tensor, u: torch.Tensor, sub_u: torch.Tensor,
                order: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x: (B, T, C) with the G patch tokens last, u: (B, G, G), sub_u: (B, G/local, local, local),
        order: z-order permutation and its inverse, (B, G) each -> (B, T, C)."""
        h = self.down(x)  # (B, T, r)
        B, windows, local, _ = sub_u.shape
        G = windows * local
        z = h[:, -G:]  # (B, G, r), before the activation
        glob = self._spectral(z, u, self.norm_ly1)  # (B, G, r)
        loc = self._spectral(gather_tokens(z, order[0]).reshape(B, windows, local, self.rank), sub_u, self.norm_ly2)
        loc = gather_tokens(loc.reshape(B, G, self.rank), order[1])  # (B, G, r) back in token order
        a = self.act(h)
        out = torch.cat([a[:, :-G], (glob + loc) + a[:, -G:]], dim=1)  # (B, T, r)
        return self.up(out)

    def extra_repr(self) -> str:
        return f"rank={self.rank}"
