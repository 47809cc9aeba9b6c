"""Mini-PointNet patch encoder (official ``Encoder``): one token per point patch."""
import torch
from torch import nn


class Encoder(nn.Module):
    """Conv1d 3->128, BN, ReLU, Conv1d 128->256; max-pool; concat global+local (512);
    Conv1d 512->512, BN, ReLU, Conv1d 512->encoder_channel; max-pool.

    Keys: ``first_conv.{0,1,3}.*``, ``second_conv.{0,1,3}.*`` as in the official code.
    """

    def __init__(self, encoder_channel: int):
        super().__init__()
        self.encoder_channel = encoder_channel
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, 128, 1),
            nn.BatchNorm1d(128),
            nn.ReLU(inplace=True),
            nn.Conv1d(128, 256, 1),
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Conv1d(512, encoder_channel, 1),
        )

    def forward(self, point_groups: torch.Tensor) -> torch.Tensor:
        """point_groups: (B, G, K, 3) -> tokens (B, G, encoder_channel)."""
        B, G, K, _ = point_groups.shape
        x = point_groups.reshape(B * G, K, 3).transpose(2, 1)  # (B*G, 3, K)
        feature = self.first_conv(x)  # (B*G, 256, K)
        global_feature = feature.max(dim=2, keepdim=True)[0]  # (B*G, 256, 1)
        feature = torch.cat([global_feature.expand(-1, -1, K), feature], dim=1)  # (B*G, 512, K)
        feature = self.second_conv(feature)  # (B*G, C, K)
        return feature.max(dim=2)[0].reshape(B, G, self.encoder_channel)  # (B, G, C)
