"""Point-MAE classification model (official ``PointTransformer`` of Pang et al., models/Point_MAE.py).

points (B, N, 3) -> FPS+kNN patches (B, G, K, 3) -> mini-PointNet tokens (B, G, C) -> [cls] + tokens
with positional embeddings added before every block -> LayerNorm -> concat(cls output, max over
group tokens) (B, 2C) -> head -> logits (B, cls_dim).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .base import CLASSIFICATION_HEAD, FrozenBNMixin
from .layers import TransformerEncoder, drop_path_schedule, trunc_normal_init_weights
from .stem import STEM_REGIONS, add_patch_embedding, add_transformer



class PointMAE(FrozenBNMixin, nn.Module):
    """Point-MAE transformer with the official fine-tuning head (``cls_head_finetune``)."""

    TASK = "classification"
    HEAD_MODULES = CLASSIFICATION_HEAD  # what Point-MAE fine-tuning trains besides
    REGIONS = {**STEM_REGIONS, "reduce_dim": "patch encoder", "cls_head_finetune": "head"}

    def __init__(
        self,
        *,
        trans_dim: int,
        depth: int,
        drop_path_rate: float,
        cls_dim: int,
        num_heads: int,
        group_size: int,
        num_group: int,
        encoder_dims: int,
        fps_skip_near_origin: bool = True,
        attention: str = "explicit",
    ):
        super().__init__()
        self.trans_dim = trans_dim
        self.depth = depth
        self.attention = attention  # model.attention, read by _build_blocks
        self.cls_dim = cls_dim
        self.num_heads = num_heads
        self.group_size = group_size
        self.num_group = num_group
        self.encoder_dims = encoder_dims
        add_patch_embedding(self, encoder_dims=encoder_dims, num_group=num_group, group_size=group_size,
                            fps_skip_near_origin=fps_skip_near_origin)
        self.reduce_dim = self._build_reduce_dim()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, trans_dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, trans_dim))
        add_transformer(self, trans_dim=trans_dim,
                        build_blocks=lambda: self._build_blocks(drop_path_schedule(drop_path_rate, depth)))
        self.cls_head_finetune = self._build_head(cls_dim)
        self.apply(trunc_normal_init_weights)  # official "training from scratch" init
        nn.init.trunc_normal_(self.cls_token, std=0.02, a=-2.0, b=2.0)
        nn.init.trunc_normal_(self.cls_pos, std=0.02, a=-2.0, b=2.0)

    def _build_reduce_dim(self) -> nn.Module:
        """Point-MAE's encoder already outputs trans_dim channels: no bridge (no keys)."""
        if self.encoder_dims != self.trans_dim:
            raise ValueError(
                f"PointMAE needs encoder_dims == trans_dim, got encoder_dims={self.encoder_dims}, "
                f"trans_dim={self.trans_dim} (Point-BERT's encoder_dims 256 needs NAME: PointBERT)"
            )
        return nn.Identity()

    def feature_dim(self) -> int:
        """Width of ``forward_features``: [cls] output and max over the group tokens."""
        return 2 * self.trans_dim

    def _build_blocks(self, rates: list) -> nn.Module:
        """The transformer (``blocks.blocks.{i}``); method variants (DAPT, PointGST) build theirs."""
        return TransformerEncoder(self.trans_dim, self.depth, self.num_heads, rates, attention=self.attention)

    def _build_head(self, cls_dim: int) -> nn.Sequential:
        """Official head: Linear(2C,256)-BN-ReLU-Dropout-Linear(256,256)-BN-ReLU-Dropout-Linear(256,cls_dim)."""
        return nn.Sequential(
            nn.Linear(self.feature_dim(), 256),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(256, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(256, cls_dim),
        )

    def encode_patches(self, neighborhood: torch.Tensor) -> torch.Tensor:
        """neighborhood: (B, G, K, 3) -> patch tokens (B, G, trans_dim)."""
        return self.reduce_dim(self.encoder(neighborhood))

    def embed(self, points: torch.Tensor):
        """points: (B, N, 3) -> what the blocks read, shared by the method variants: tokens (B, 1 + G, C)
        with [cls] first, their positional embeddings (B, 1 + G, C), and the patch centres (B, G, 3)."""
        neighborhood, center = self.group_divider(points)  # (B, G, K, 3), (B, G, 3)
        tokens = self.encode_patches(neighborhood)  # (B, G, C)
        B = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(B, -1, -1), tokens], dim=1)  # (B, 1+G, C)
        pos = torch.cat([self.cls_pos.expand(B, -1, -1), self.pos_embed(center)], dim=1)  # (B, 1+G, C)
        return x, pos, center

    def forward_tokens(self, points: torch.Tensor) -> torch.Tensor:
        """points: (B, N, 3) -> normalised tokens (B, 1 + G, trans_dim), token 0 is [cls]."""
        x, pos, _ = self.embed(points)
        return self.norm(self.blocks(x, pos))

    def forward_features(self, points: torch.Tensor) -> torch.Tensor:
        """points: (B, N, 3) -> features (B, 2 * trans_dim) = concat(cls output, max over groups)."""
        x = self.forward_tokens(points)
        return torch.cat([x[:, 0], x[:, 1:].max(dim=1)[0]], dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, 2 * trans_dim) -> logits (B, cls_dim)."""
        return self.cls_head_finetune(features)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points: (B, N, 3) float -> logits (B, cls_dim)."""
        return self.forward_head(self.forward_features(points))

    def reset_head(self, num_classes: int) -> None:
        """Replace the last head layer by a freshly initialised one with ``num_classes`` outputs."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        old = self.cls_head_finetune[-1]
        new = nn.Linear(old.in_features, num_classes).to(device=old.weight.device, dtype=old.weight.dtype)
        trunc_normal_init_weights(new)
        self.cls_head_finetune[-1] = new
        self.cls_dim = num_classes

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits: (B, cls_dim), target: (B,) int -> scalar; plain cross-entropy as the official code."""
        return F.cross_entropy(logits, target.long())
