"""Point-BERT classification model (official ``PointTransformer`` of Yu et al., models/Point_BERT.py).

Same transformer as Point-MAE, but the dVAE-style encoder outputs ``encoder_dims`` (256) channels
bridged to ``trans_dim`` by ``reduce_dim``, a lighter head, and label smoothing 0.2 in the loss.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .point_mae import PointMAE

LABEL_SMOOTHING = 0.2  # Point-BERT get_loss_acc(smoothing=True)


class PointBERT(PointMAE):
    """Point-BERT transformer with its fine-tuning head."""

    def _build_reduce_dim(self) -> nn.Module:
        return nn.Linear(self.encoder_dims, self.trans_dim)

    def _build_head(self, cls_dim: int) -> nn.Sequential:
        """Official head: Linear(2C,256)-ReLU-Dropout(0.5)-Linear(256,cls_dim)."""
        return nn.Sequential(
            nn.Linear(self.trans_dim * 2, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(256, cls_dim),
        )

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits: (B, cls_dim), target: (B,) -> scalar. Official smoothing: the true class gets
        1 - 0.2, every other class 0.2 / (cls_dim - 1) (not torch's 0.2 / cls_dim)."""
        n_class = logits.shape[1]
        if n_class < 2:
            raise ValueError(f"label smoothing needs at least 2 classes, logits has {n_class}")
        one_hot = torch.zeros_like(logits).scatter(1, target.long().view(-1, 1), 1.0)  # (B, cls_dim)
        soft = one_hot * (1 - LABEL_SMOOTHING) + (1 - one_hot) * LABEL_SMOOTHING / (n_class - 1)
        return -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
