"""Point-MAE pre-training model (official ``Point_MAE`` + ``MaskTransformer``, Pang et al.).

Patches -> mask ``mask_ratio`` of them (random or one contiguous block) -> the encoder sees only
the visible tokens -> the decoder gets visible tokens + mask tokens with positional embeddings ->
a Conv1d predicts group_size x 3 coordinates per masked patch -> Chamfer distance to the true
masked patches (``cuda_ext.chamfer_distance``). State-dict keys are the official ones
(``MAE_encoder.*``, ``MAE_decoder.*``, ``mask_token``, ``decoder_pos_embed.*``, ``increase_dim.*``).
"""
from typing import NamedTuple, Optional

import torch
from torch import nn

import cuda_ext

from .base import FrozenBNMixin
from .grouping import Group
from .layers import TransformerDecoder, TransformerEncoder, drop_path_schedule, trunc_normal_init_weights
from .stem import add_patch_embedding, add_transformer, positional_mlp

MASK_TYPES = ("rand", "block")
LOSSES = ("cdl2", "cdl1")


def num_masked(mask_ratio: float, num_group: int) -> int:
    """Masked patches per cloud, int(ratio * G) as the official code."""
    return int(mask_ratio * num_group)


def mask_rand(center: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """center: (B, G, 3) -> mask (B, G) bool with exactly int(ratio*G) random True per row."""
    B, G, _ = center.shape
    order = torch.rand(B, G, device=center.device).argsort(dim=1)  # a random permutation per row
    mask = torch.zeros(B, G, dtype=torch.bool, device=center.device)
    return mask.scatter(1, order[:, : num_masked(mask_ratio, G)], True)


def mask_block(center: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """center: (B, G, 3) -> mask (B, G) bool: the int(ratio*G) centres nearest a random centre."""
    B, G, _ = center.shape
    seed = torch.randint(0, G, (B,), device=center.device)  # (B,)
    dist = (center - center[torch.arange(B, device=center.device), seed].unsqueeze(1)).norm(dim=-1)  # (B, G)
    order = dist.argsort(dim=1)
    mask = torch.zeros(B, G, dtype=torch.bool, device=center.device)
    return mask.scatter(1, order[:, : num_masked(mask_ratio, G)], True)


class MaskTransformer(nn.Module):
    """The pre-training encoder (``MAE_encoder``): patch encoder, pos MLP, blocks, norm."""

    def __init__(self, trans_dim: int, depth: int, drop_path_rate: float, num_heads: int, encoder_dims: int,
                 mask_ratio: float, mask_type: str, attention: str = "explicit"):
        super().__init__()
        self.mask_ratio = mask_ratio
        self.mask_type = mask_type
        add_patch_embedding(self, encoder_dims=encoder_dims)
        add_transformer(self, trans_dim=trans_dim, build_blocks=lambda: TransformerEncoder(
            trans_dim, depth, num_heads, drop_path_schedule(drop_path_rate, depth), attention))
        self.apply(trunc_normal_init_weights)

    def make_mask(self, center: torch.Tensor) -> torch.Tensor:
        """center: (B, G, 3) -> mask (B, G) bool, True = masked (hidden from the encoder)."""
        masker = mask_rand if self.mask_type == "rand" else mask_block
        return masker(center, self.mask_ratio)

    def forward(self, neighborhood: torch.Tensor, center: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """neighborhood: (B, G, K, 3), center: (B, G, 3), mask: (B, G) -> visible tokens (B, V, C)."""
        tokens = self.encoder(neighborhood)  # (B, G, C)
        B, _, C = tokens.shape
        x_vis = tokens[~mask].reshape(B, -1, C)  # (B, V, C): every row has the same count
        pos = self.pos_embed(center[~mask].reshape(B, -1, 3))  # (B, V, C)
        return self.norm(self.blocks(x_vis, pos))


class Reconstruction(NamedTuple):
    """Absolute coordinates for visualisation: visible (B, V, K, 3), reconstructed (B, M, K, 3)
    masked patches, center (B, G, 3) and mask (B, G) bool (True = masked)."""

    visible: torch.Tensor
    reconstructed: torch.Tensor
    center: torch.Tensor
    mask: torch.Tensor


class PointMAEPretrain(FrozenBNMixin, nn.Module):
    """Masked point-patch autoencoder; ``forward(points) -> loss`` (Chamfer on masked patches)."""

    TASK = "pretrain"
    BLOCKS = ("MAE_encoder.blocks.blocks", "MAE_decoder.blocks")

    def __init__(
        self,
        *,
        trans_dim: int,
        depth: int,
        drop_path_rate: float,
        num_heads: int,
        group_size: int,
        num_group: int,
        encoder_dims: int,
        mask_ratio: float = 0.6,
        mask_type: str = "rand",
        decoder_depth: int = 4,
        decoder_num_heads: Optional[int] = None,
        loss: str = "cdl2",
        fps_skip_near_origin: bool = True,
        attention: str = "explicit",
    ):
        super().__init__()
        self._validate(trans_dim, encoder_dims, num_group, mask_ratio, mask_type, loss)
        self.trans_dim = trans_dim
        self.group_size = group_size
        self.num_group = num_group
        self.loss_type = loss
        self.MAE_encoder = MaskTransformer(trans_dim, depth, drop_path_rate, num_heads, encoder_dims, mask_ratio, mask_type,
                                           attention)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, trans_dim))
        self.decoder_pos_embed = positional_mlp(trans_dim)
        heads = decoder_num_heads if decoder_num_heads is not None else num_heads
        self.MAE_decoder = TransformerDecoder(trans_dim, decoder_depth, heads, drop_path_schedule(drop_path_rate, decoder_depth),
                                              attention)
        self.group_divider = Group(num_group, group_size, skip_near_origin=fps_skip_near_origin)
        self.increase_dim = nn.Sequential(nn.Conv1d(trans_dim, 3 * group_size, 1))
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-2.0, b=2.0)

    @staticmethod
    def _validate(trans_dim, encoder_dims, num_group, mask_ratio, mask_type, loss) -> None:
        if encoder_dims != trans_dim:
            raise ValueError(f"PointMAEPretrain needs encoder_dims == trans_dim, got {encoder_dims} and {trans_dim}")
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        n = num_masked(mask_ratio, num_group)
        if not 0 < n < num_group:
            raise ValueError(f"mask_ratio={mask_ratio} masks {n} of num_group={num_group} patches; "
                             "need at least one masked and one visible patch")

    def _decode(self, x_vis: torch.Tensor, center: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Visible tokens (B, V, C) -> predicted masked patches (B, M, K, 3) relative to centres."""
        B, _, C = x_vis.shape
        pos_vis = self.decoder_pos_embed(center[~mask]).reshape(B, -1, C)  # (B, V, C)
        pos_mask = self.decoder_pos_embed(center[mask]).reshape(B, -1, C)  # (B, M, C)
        M = pos_mask.shape[1]
        x_full = torch.cat([x_vis, self.mask_token.expand(B, M, -1)], dim=1)  # (B, V+M, C)
        x_rec = self.MAE_decoder(x_full, torch.cat([pos_vis, pos_mask], dim=1), M)  # (B, M, C)
        points = self.increase_dim(x_rec.transpose(1, 2)).transpose(1, 2)  # (B, M, 3K)
        return points.reshape(B, M, self.group_size, 3)

    def _chamfer(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: (P, K, 3) -> official ChamferDistanceL2 (mean d1 + mean d2, squared) or L1.

        Always in float32: under autocast ``increase_dim`` gives bf16/fp16 predictions while the
        target patches stay float32 (the Chamfer op needs one float dtype, and squared distances of
        nearby points lose their digits in 16 bits). A non-finite prediction (a diverged run) gives
        a NaN loss, which the trainer reports, instead of the op's ValueError on NaN coordinates.
        """
        pred, target = pred.float().contiguous(), target.float().contiguous()
        if not bool(torch.isfinite(pred).all()):
            return pred.sum() * float("nan")
        dist1, dist2, _, _ = cuda_ext.chamfer_distance(pred, target)
        if self.loss_type == "cdl1":
            return (dist1.sqrt().mean() + dist2.sqrt().mean()) / 2
        return dist1.mean() + dist2.mean()

    def _run(self, points: torch.Tensor):
        neighborhood, center = self.group_divider(points)  # (B, G, K, 3), (B, G, 3)
        mask = self.MAE_encoder.make_mask(center)  # (B, G)
        x_vis = self.MAE_encoder(neighborhood, center, mask)
        rebuilt = self._decode(x_vis, center, mask)  # (B, M, K, 3)
        B, M, K, _ = rebuilt.shape
        target = neighborhood[mask].reshape(B * M, -1, 3)  # (B*M, K, 3)
        loss = self._chamfer(rebuilt.reshape(B * M, K, 3), target)
        return loss, neighborhood, center, mask, rebuilt

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points: (B, N, 3) float -> scalar Chamfer loss on the masked patches."""
        return self._run(points)[0]

    @torch.no_grad()
    def reconstruct(self, points: torch.Tensor) -> Reconstruction:
        """points: (B, N, 3) -> visible patches, reconstructed masked patches (absolute
        coordinates), centres and the mask, for the reconstruction view."""
        _, neighborhood, center, mask, rebuilt = self._run(points)
        B, G, K, _ = neighborhood.shape
        absolute = neighborhood + center.unsqueeze(2)  # (B, G, K, 3)
        visible = absolute[~mask].reshape(B, -1, K, 3)  # (B, V, K, 3)
        reconstructed = rebuilt + center[mask].reshape(B, -1, 1, 3)  # (B, M, K, 3)
        return Reconstruction(visible, reconstructed, center, mask)
