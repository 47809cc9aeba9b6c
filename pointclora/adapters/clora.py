"""CLoRA (Liu, Zhu, Huang, arXiv 2512.24603): base-space sharing and SADE.

p shared pairs of spaces, down D_h: (d_in, r) and up U_h: (r, d_out), h = 1..p, live in one
CLoRABank shared by m low-rank modules (LRMs). LRM j owns Q^j: (p, r, r) and its update is
dW_j = sum_h D_h Q_h^j U_h: (d_in, d_out), of rank up to p * r, for p (d_in r + r d_out + m r^2)
trainable parameters per bank instead of LoRA's m r (d_in + d_out).

Placement 'input' (the paper's): x' = x + s * x dW_j feeds the target Linear, which merges exactly
into W' = W (I + s dW_j)^T. Placement 'weight': y = base(x) + s * x dW_j, i.e. W' = W + s dW_j^T.
The training forward never forms dW_j: x @ D -> @ Q -> @ U, batched over h.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from .base import AdapterLayer


class CLoRABank(nn.Module):
    """Shared spaces D: (p, d_in, r), U: (p, r, d_out), each D_h / U_h random orthogonal at init."""

    def __init__(self, num_bases: int, d_in: int, d_out: int, rank: int, generator=None, dtype=None, device=None):
        super().__init__()
        self.num_bases, self.d_in, self.d_out, self.rank = num_bases, d_in, d_out, rank
        self.D = nn.Parameter(torch.empty(num_bases, d_in, rank, dtype=dtype, device=device))
        self.U = nn.Parameter(torch.empty(num_bases, rank, d_out, dtype=dtype, device=device))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        with torch.no_grad():
            for h in range(self.num_bases):
                # orthogonal_ gives orthonormal columns of D_h (d_in >= r) and rows of U_h (d_out >= r).
                d = torch.empty(self.d_in, self.rank)
                u = torch.empty(self.rank, self.d_out)
                nn.init.orthogonal_(d, generator=generator)
                nn.init.orthogonal_(u, generator=generator)
                self.D[h].copy_(d)
                self.U[h].copy_(u)

    def extra_repr(self) -> str:
        return f"num_bases={self.num_bases}, d_in={self.d_in}, d_out={self.d_out}, rank={self.rank}"


class CLoRALinear(AdapterLayer):
    """One LRM on an nn.Linear. Owns clora_Q: (p, r, r); the bank is shared and owned by the model root.

    The bank is kept as a plain attribute (not a registered submodule) so that its parameters appear
    once in the model's state_dict and optimiser, under the root's `clora_banks`.
    """

    def __init__(self, base_layer: nn.Linear, bank: CLoRABank, placement: str, scale: float, dropout: float = 0.0):
        super().__init__(base_layer)
        if placement not in ("input", "weight"):
            raise ValueError(f"placement must be 'input' or 'weight', got {placement!r}")
        d_out = self.in_features if placement == "input" else self.out_features
        if (bank.d_in, bank.d_out) != (self.in_features, d_out):
            raise ValueError(
                f"CLoRA bank of shape d_in={bank.d_in}, d_out={bank.d_out} does not fit a Linear "
                f"{self.in_features}->{self.out_features} with placement={placement!r}"
            )
        object.__setattr__(self, "bank", bank)  # shared, deliberately unregistered
        self.placement = placement
        self.scale = scale
        self.clora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        w = base_layer.weight
        self.clora_Q = nn.Parameter(torch.zeros(bank.num_bases, bank.rank, bank.rank, dtype=w.dtype, device=w.device))

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """x dW_j without forming dW_j. x: (..., d_in) -> (..., d_out)."""
        p, r = self.bank.num_bases, self.bank.rank
        d_cat = self.bank.D.permute(1, 0, 2).reshape(self.bank.d_in, p * r)  # (d_in, p*r)
        u_cat = self.bank.U.reshape(p * r, self.bank.d_out)  # (p*r, d_out)
        z = (x @ d_cat).unflatten(-1, (p, r))  # (..., p, r)
        z = torch.einsum("...hr,hrs->...hs", z, self.clora_Q)  # (..., p, r)
        return z.flatten(-2) @ u_cat  # (..., d_out)

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        update = self.delta(self.clora_dropout(x)) * self.scale
        if self.placement == "input":
            return self.base_layer(x + update)
        return self.base_layer(x) + update

    def delta_weight(self) -> torch.Tensor:
        """dW_j = sum_h D_h Q_h^j U_h: (d_in, d_out). Materialised only for merging and tests."""
        dq = torch.einsum("hdr,hrs->hds", self.bank.D, self.clora_Q)  # (p, d_in, r)
        return torch.einsum("hds,hse->de", dq, self.bank.U)

    def merged_weight(self) -> torch.Tensor:
        w = self.base_layer.weight.double()  # (out, in)
        dw = self.delta_weight().double() * self.scale
        if self.placement == "weight":
            return (w + dw.T).to(self.base_layer.weight.dtype)
        eye = torch.eye(self.in_features, dtype=w.dtype, device=w.device)
        return (w @ (eye + dw).T).to(self.base_layer.weight.dtype)  # W (I + s dW)^T

    def unmerged_weight(self) -> torch.Tensor:
        w = self.base_layer.weight.double()
        dw = self.delta_weight().double() * self.scale
        if self.placement == "weight":
            return (w - dw.T).to(self.base_layer.weight.dtype)
        eye = torch.eye(self.in_features, dtype=w.dtype, device=w.device)
        # W' = W A^T with A = I + s dW  =>  A W^T = W'^T
        return torch.linalg.solve(eye + dw, w.T).T.to(self.base_layer.weight.dtype)

    def extra_repr(self) -> str:
        return f"placement={self.placement}, scale={self.scale}, " + super().extra_repr()


def sade_bank(bank: CLoRABank, qs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalised SADE ratios of the LRMs of one bank through r x r factors only.

    qs: (m, p, r, r) the Q^j of the bank's m LRMs. With M_a = D_a Q_a U_a (j omitted):
      ||M_a^T M_b||_F^2 = tr(K^T Gu_a K Gu_b),  K = Q_a^T Gd_ab Q_b,  ||M_a||_F^2 = tr(K_aa Gu_a),
    Gd_ab = D_a^T D_b, Gu_a = U_a U_a^T (r x r). Cost O(p^2 d r^2) once per bank + O(m p^2 r^3).
    returns: (m, p, p) ratio ||M_a^T M_b||^2 / (||M_a||^2 ||M_b||^2 + eps) (diagonal included).
    """
    gd = torch.einsum("adr,bds->abrs", bank.D, bank.D)  # (p, p, r, r)
    gu = torch.einsum("ard,asd->ars", bank.U, bank.U)  # (p, r, r)
    k = torch.einsum("jaxr,abxy,jbys->jabrs", qs, gd, qs)  # (m, p, p, r, r)
    left = torch.einsum("ars,jabst->jabrt", gu, k)  # Gu_a K
    right = torch.einsum("jabrs,bst->jabrt", k, gu)  # K Gu_b
    num = (left * right).sum(dim=(-2, -1))  # (m, p, p)
    norms = torch.einsum("jaars,ars->ja", k, gu)  # (m, p) = ||M_a^j||_F^2
    return num / (norms[:, :, None] * norms[:, None, :] + eps)


def sade_direct(bank: CLoRABank, qs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Reference of sade_bank forming every d x d component M_h^j (tests only). Same (m, p, p) output."""
    ms = torch.einsum("hdr,jhrs,hse->jhde", bank.D, qs, bank.U)  # (m, p, d_in, d_out)
    prod = torch.einsum("jadx,jbdy->jabxy", ms, ms)  # M_a^T M_b: (m, p, p, d_out, d_out)
    num = prod.pow(2).sum(dim=(-2, -1))
    norms = ms.pow(2).sum(dim=(-2, -1))  # (m, p)
    return num / (norms[:, :, None] * norms[:, None, :] + eps)


def sade_loss(layers: List[CLoRALinear], eps: float = 1e-8) -> torch.Tensor:
    """Mean over LRMs j and ordered pairs a != b of the normalised SADE ratio (0 when p = 1)."""
    by_bank = {}
    for layer in layers:
        by_bank.setdefault(id(layer.bank), (layer.bank, []))[1].append(layer.clora_Q)
    if not layers:
        raise ValueError("sade_loss needs at least one CLoRALinear layer")
    total, count = None, 0
    for bank, qs in by_bank.values():
        p = bank.num_bases
        if p < 2:
            continue
        ratios = sade_bank(bank, torch.stack(qs), eps)  # (m, p, p)
        off = ~torch.eye(p, dtype=torch.bool, device=ratios.device)
        s = ratios[:, off].sum()
        total = s if total is None else total + s
        count += ratios.shape[0] * p * (p - 1)
    if total is None:
        return layers[0].clora_Q.new_zeros(())
    return total / count
