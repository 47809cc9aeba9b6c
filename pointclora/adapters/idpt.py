"""IDPT (Zha et al., "Instance-aware Dynamic Prompt Tuning for Pre-trained Point Cloud Models",
ICCV 2023): config and prompt generators. The model variant is ``pointclora.models.idpt.PointMAEIDPT``.

A prompt generator maps the G point tokens entering block ``prompt_layer``, (B, C, G), to one
instance prompt (B, 1, C). Official ``prompt_module`` choices (models/dgcnn.py, models/Point_MAE.py of
github.com/zyh16143998882/ICCV23-IDPT): 'dgcnn' (three dynamic EdgeConv layers, the official configs),
'dgcnn_light2' (two), 'dgcnn_light' (one), 'mlp' (none: a 1x1 conv) and 'transformer' (one block).
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import TransformerEncoder
from .methods import MethodConfig, check_choice, check_positive_int, register_method

# prompt_module -> number of EdgeConv layers of the DGCNN generator (official DGCNNView* / DGCNNViewMLP)
EDGE_CONVS = {"dgcnn": 3, "dgcnn_light2": 2, "dgcnn_light": 1, "mlp": 0}
PROMPT_MODULES = tuple(EDGE_CONVS) + ("transformer",)
# official cls_type values: what the head reads (see pointclora.models.idpt.READOUTS)
CLS_TYPES = ("all", "promptcls", "pointcls", "promptonly")
NEGATIVE_SLOPE = 0.2  # official DGCNN args: leaky_relu=1 -> LeakyReLU(0.2)
DEFAULT_K = 20  # official DGCNN args: k=20 neighbours in feature space


@dataclass
class IDPTConfig(MethodConfig):
    """IDPT on Point-MAE. Fields left None take the model's value or the official default.

    prompt_layer: index of the block the prompt is inserted before (official 11; 6 for OBJ_ONLY).
    prompt_module: the prompt generator, one of PROMPT_MODULES (official 'dgcnn').
    cls_type: what the head reads: 'all' ([cls], prompt, max over points), 'promptcls',
        'pointcls' or 'promptonly' (official 'all'; 'promptonly' for OBJ_BG).
    prompt_k: neighbours of the DGCNN generators' feature-space kNN (official 20, fixed in its code).
    """

    method: str = "idpt"
    prompt_layer: Optional[int] = None
    prompt_module: Optional[str] = None
    cls_type: Optional[str] = None
    prompt_k: Optional[int] = None

    OFFICIAL = {"prompt_layer": 11, "prompt_module": "dgcnn", "cls_type": "all", "prompt_k": DEFAULT_K}
    COTO_NOTE = ("IDPT has no per-layer adapters to activate progressively: its one prompt generator feeds the "
                 "prompt token the head reads, so dropping it changes the token count and the head input")
    MERGE_NOTE = ("IDPT cannot be merged into the backbone: its prompt is computed from each cloud's point tokens "
                  "(instance-dependent) and inserted as an extra token")

    def validate_fields(self) -> None:
        check_choice(self, "prompt_module", PROMPT_MODULES)
        check_choice(self, "cls_type", CLS_TYPES)
        check_positive_int(self, "prompt_k")
        value = self.prompt_layer
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"IDPTConfig.prompt_layer must be an integer >= 0 (a block index), got {value!r}")


register_method("idpt", IDPTConfig, "PointMAEIDPT")


def knn_features(x: torch.Tensor, k: int) -> torch.Tensor:
    """x: (B, C, G) float -> idx (B, G, k) int64 of the k nearest tokens in feature space (self included).

    Same expression as DGCNN's ``knn`` (-|a|^2 + 2 a.b - |b|^2, largest k), so near-ties resolve alike.
    """
    inner = -2 * torch.matmul(x.transpose(2, 1), x)  # (B, G, G)
    xx = torch.sum(x ** 2, dim=1, keepdim=True)  # (B, 1, G)
    neg_dist = -xx - inner - xx.transpose(2, 1)  # (B, G, G)
    return neg_dist.topk(k=k, dim=-1)[1]


def edge_features(x: torch.Tensor, k: int) -> torch.Tensor:
    """x: (B, C, G) -> EdgeConv input (B, 2C, G, k): concat(neighbour - centre, centre)."""
    B, C, G = x.shape
    idx = knn_features(x, k) + torch.arange(B, device=x.device).view(B, 1, 1) * G  # (B, G, k)
    x = x.transpose(2, 1).contiguous()  # (B, G, C)
    neighbours = x.view(B * G, C)[idx.view(-1)].view(B, G, k, C)  # (B, G, k, C)
    centre = x.view(B, G, 1, C).expand(-1, -1, k, -1)  # (B, G, k, C)
    return torch.cat([neighbours - centre, centre], dim=3).permute(0, 3, 1, 2).contiguous()  # (B, 2C, G, k)


class DGCNNPrompt(nn.Module):
    """DGCNN prompt generator: ``edge_convs`` dynamic EdgeConv layers on the point tokens, their
    outputs concatenated, a 1x1 Conv1d-BN-LeakyReLU back to C channels, max over tokens.

    forward(tokens (B, C, G), pos) -> prompt (B, 1, C); ``pos`` is unused (official signature).
    Keys (official): ``bn{i}``, ``conv{i}.{0,1}`` for i <= edge_convs, ``bn5``, ``conv5.{0,1}``. The
    EdgeConv BatchNorms are registered twice (``bn{i}`` and ``conv{i}.1``) as in the official module.
    With 0 or 1 EdgeConvs the official code re-assigns ``bn5`` after building ``conv5``, leaving an
    unused BatchNorm ``bn5`` (counted, never run) beside ``conv5.1``; kept so its checkpoints load.
    """

    def __init__(self, dim: int, edge_convs: int, k: int = DEFAULT_K):
        super().__init__()
        if edge_convs not in (0, 1, 2, 3):
            raise ValueError(f"DGCNNPrompt: edge_convs must be 0..3, got {edge_convs}")
        self.dim, self.edge_convs, self.k = dim, edge_convs, k
        bns = [nn.BatchNorm2d(dim) for _ in range(edge_convs)]
        for i, bn in enumerate(bns, start=1):
            setattr(self, f"bn{i}", bn)
        self.bn5 = nn.BatchNorm1d(dim)
        for i, bn in enumerate(bns, start=1):
            conv = nn.Conv2d(2 * dim, dim, kernel_size=1, bias=False)
            setattr(self, f"conv{i}", nn.Sequential(conv, bn, nn.LeakyReLU(NEGATIVE_SLOPE)))
        fused = dim * max(edge_convs, 1)  # with no EdgeConv, conv5 reads the tokens themselves
        self.conv5 = nn.Sequential(nn.Conv1d(fused, dim, kernel_size=1, bias=False), self.bn5,
                                   nn.LeakyReLU(NEGATIVE_SLOPE))
        if edge_convs < 2:
            self.bn5 = nn.BatchNorm1d(dim)  # official quirk: an unused BatchNorm under the name bn5

    def forward(self, tokens: torch.Tensor, pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        B = tokens.shape[0]
        x, outputs = tokens, []
        for i in range(1, self.edge_convs + 1):
            x = getattr(self, f"conv{i}")(edge_features(x, self.k)).max(dim=-1)[0]  # (B, C, G)
            outputs.append(x)
        x = self.conv5(torch.cat(outputs, dim=1) if outputs else tokens)  # (B, C, G)
        return F.adaptive_max_pool1d(x, 1).view(B, -1).unsqueeze(1)  # (B, 1, C)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, edge_convs={self.edge_convs}, k={self.k}"


class TransformerPrompt(nn.Module):
    """Transformer prompt generator (official ``TransFormerLayerView``): one block over the point
    tokens with their positional embedding, max over tokens.

    forward(tokens (B, C, G), pos (B, G, C)) -> prompt (B, 1, C). Keys: ``blocks.blocks.0.*``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.blocks = TransformerEncoder(dim, 1, num_heads, [0.0])  # official: dpr[0] of the backbone = 0

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.blocks(tokens.permute(0, 2, 1), pos)  # (B, G, C)
        return x.max(dim=1, keepdim=True)[0]  # (B, 1, C)


def build_prompt_module(name: str, dim: int, num_heads: int, k: int = DEFAULT_K) -> nn.Module:
    """Official ``prompt_module`` name -> prompt generator (B, C, G), (B, G, C) -> (B, 1, C)."""
    if name == "transformer":
        return TransformerPrompt(dim, num_heads)
    if name not in EDGE_CONVS:
        raise ValueError(f"prompt_module must be one of {PROMPT_MODULES}, got {name!r}")
    return DGCNNPrompt(dim, EDGE_CONVS[name], k)




def reset_prompt_parameters(prompt: nn.Module, seed: int) -> None:
    """PyTorch's default init of every layer of ``prompt`` (Kaiming-uniform convolutions / Linears,
    unit BatchNorm / LayerNorm), drawn from ``seed``: what the official fine-tuning run starts from,
    since its trunc-normal ``_init_weights`` runs only when no pre-trained checkpoint is given."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in prompt.modules():
            if module is not prompt and hasattr(module, "reset_parameters"):
                module.reset_parameters()
