"""Point-MAE with IDPT (the official IDPT ``PointTransformer``, github.com/zyh16143998882/ICCV23-IDPT
models/Point_MAE.py, with ``prompt_layer``, ``prompt_module``, ``cls_type``).

Differences from Point-MAE: before block ``prompt_layer`` a prompt generator turns the G point
tokens (B, G, C) into one instance prompt (B, 1, C), inserted after [cls] with its own positional
embedding ``prompt_pos`` (1, 1, C), so the later blocks carry 2 + G tokens; the head reads what
``cls_type`` says (official 'all': [cls], prompt and max over the points, 3C wide). Attribute names are
the official ones (``prompt_pos``, ``blocks.blocks.{i}``, ``blocks.cls`` = the generator), so official
fine-tuned checkpoints load strictly. The generators are in ``pointclora.adapters.idpt``.
"""
from typing import Callable, Dict, List

import torch
from torch import nn

from ..adapters.idpt import (CLS_TYPES, DEFAULT_K, EDGE_CONVS, PROMPT_MODULES, build_prompt_module,
                             reset_prompt_parameters)
from .variant import PointMAEVariant

# config keys only the IDPT PointTransformer has: their presence selects this model for NAME PointTransformer
IDPT_KEYS = frozenset({"prompt_layer", "prompt_module", "cls_type"})


def _read_all(x: torch.Tensor) -> torch.Tensor:
    """x: (B, 2 + G, C) -> (B, 3C): [cls], prompt, max over the point tokens."""
    return torch.cat([x[:, 0], x[:, 1], x[:, 2:].max(dim=1)[0]], dim=-1)


def _read_promptcls(x: torch.Tensor) -> torch.Tensor:
    """x: (B, 2 + G, C) -> (B, 2C): [cls], prompt."""
    return torch.cat([x[:, 0], x[:, 1]], dim=-1)


def _read_pointcls(x: torch.Tensor) -> torch.Tensor:
    """x: (B, 2 + G, C) -> (B, 2C): [cls], max over the point tokens (the prompt is not read)."""
    return torch.cat([x[:, 0], x[:, 2:].max(dim=1)[0]], dim=-1)


def _read_promptonly(x: torch.Tensor) -> torch.Tensor:
    """x: (B, 2 + G, C) -> (B, C): the prompt."""
    return x[:, 1]


# official cls_type -> (what the head reads from the normalised tokens, its width in units of C)
READOUTS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "all": _read_all, "promptcls": _read_promptcls, "pointcls": _read_pointcls, "promptonly": _read_promptonly,
}
READOUT_WIDTH = {"all": 3, "promptcls": 2, "pointcls": 2, "promptonly": 1}


class PromptedEncoder(nn.Module):
    """The backbone's blocks with the instance prompt inserted before block ``prompt_layer``
    (official ``TransformerPromptEncoderLayerI``). Keys: ``blocks.{i}.*``, ``cls.*`` (the generator)."""

    def __init__(self, blocks: nn.ModuleList, prompt: nn.Module, prompt_layer: int, num_group: int):
        super().__init__()
        self.blocks = blocks
        self.cls = prompt  # official name (the official optimiser trains every name holding 'cls')
        self.prompt_layer = prompt_layer
        self.num_group = num_group

    def forward(self, x: torch.Tensor, pos: torch.Tensor, prompt_pos: torch.Tensor) -> torch.Tensor:
        """x, pos: (B, 1 + G, C) ([cls] + point tokens), prompt_pos: (B, 1, C) -> (B, 2 + G, C)."""
        G = self.num_group
        for i, block in enumerate(self.blocks):
            if i == self.prompt_layer:
                points = x[:, -G:]  # (B, G, C): the point tokens entering this block
                prompt = self.cls(points.permute(0, 2, 1), pos[:, -G:])  # (B, 1, C)
                x = torch.cat([x[:, :1], prompt, points], dim=1)  # (B, 2 + G, C)
                pos = torch.cat([pos[:, :1], prompt_pos, pos[:, -G:]], dim=1)  # (B, 2 + G, C)
            x = block(x + pos)
        return x

    def extra_repr(self) -> str:
        return f"prompt_layer={self.prompt_layer}, num_group={self.num_group}"


class PointMAEIDPT(PointMAEVariant):
    """Point-MAE transformer with IDPT. Keyword arguments are the official model keys.

    prompt_layer: index of the block the prompt is inserted before (official: 11, the last of 12).
    prompt_module: 'dgcnn' (official configs) | 'dgcnn_light2' | 'dgcnn_light' | 'mlp' | 'transformer'.
    cls_type: what the head reads: 'all' ([cls], prompt, max over points: 3C) | 'promptcls' ([cls],
        prompt) | 'pointcls' ([cls], max over points) | 'promptonly'.
    prompt_k: neighbours of the DGCNN generators' feature-space kNN (official: 20, fixed in its code).
    """

    METHOD = "idpt"

    def __init__(self, *, trans_dim: int, depth: int, drop_path_rate: float, cls_dim: int, num_heads: int,
                 group_size: int, num_group: int, encoder_dims: int, prompt_layer: int = 11,
                 prompt_module: str = "dgcnn", cls_type: str = "all", prompt_k: int = DEFAULT_K,
                 fps_skip_near_origin: bool = True, attention: str = "explicit"):
        check_idpt_keys(depth, num_group, prompt_layer, prompt_module, cls_type, prompt_k)
        self.prompt_layer, self.prompt_module, self.cls_type, self.prompt_k = (
            prompt_layer, prompt_module, cls_type, prompt_k)  # read by _build_blocks / feature_dim
        super().__init__(trans_dim=trans_dim, depth=depth, drop_path_rate=drop_path_rate, cls_dim=cls_dim,
                         num_heads=num_heads, group_size=group_size, num_group=num_group,
                         encoder_dims=encoder_dims, fps_skip_near_origin=fps_skip_near_origin, attention=attention)
        self.prompt_pos = nn.Parameter(torch.zeros(1, 1, trans_dim))
        self.reset_adapter_parameters()
        self._readout = READOUTS[cls_type]

    def feature_dim(self) -> int:
        return self.trans_dim * READOUT_WIDTH[self.cls_type]

    def _build_blocks(self, rates: list) -> nn.Module:
        blocks = super()._build_blocks(rates).blocks  # the backbone's blocks, keys blocks.blocks.{i}
        prompt = build_prompt_module(self.prompt_module, self.trans_dim, self.num_heads, self.prompt_k)
        return PromptedEncoder(blocks, prompt, self.prompt_layer, self.num_group)

    def reset_adapter_parameters(self, seed: int = 0) -> None:
        """Official init, drawn from ``seed``: ``prompt_pos`` trunc-normal(0.02) (the official rule never
        trains it, so this value is part of the method and of its adapter file), the generator PyTorch's
        default (its official fine-tuning init, see pointclora.adapters.idpt.reset_prompt_parameters)."""
        gen = torch.Generator().manual_seed(seed)
        pos = torch.empty(self.prompt_pos.shape, device="cpu")
        nn.init.trunc_normal_(pos, std=0.02, a=-2.0, b=2.0, generator=gen)
        with torch.no_grad():
            self.prompt_pos.copy_(pos)
        reset_prompt_parameters(self.blocks.cls, seed)

    reset_prompt_parameters = reset_adapter_parameters  # IDPT's own name for it

    # --- the interface of pointclora.adapters.methods
    def method_fields(self) -> Dict[str, object]:
        return dict(prompt_layer=self.prompt_layer, prompt_module=self.prompt_module, cls_type=self.cls_type,
                    prompt_k=self.prompt_k)

    def adapter_parameter_names(self) -> List[str]:
        """The official freezing rule ('cls' in the name) without the head and class token: the generator."""
        return [n for n, _ in self.named_parameters() if n.startswith("blocks.cls.")]

    def adapter_frozen_names(self) -> List[str]:
        """Frozen tensors the method adds to the backbone, kept in adapter files: ``prompt_pos``."""
        return ["prompt_pos"]

    # --- forward
    def forward_tokens(self, points: torch.Tensor) -> torch.Tensor:
        """points: (B, N, 3) -> normalised tokens (B, 2 + G, C): [cls], prompt, point tokens."""
        x, pos, _ = self.embed(points)  # (B, 1 + G, C) each
        return self.norm(self.blocks(x, pos, self.prompt_pos.expand(x.shape[0], -1, -1)))

    def forward_features(self, points: torch.Tensor) -> torch.Tensor:
        """points: (B, N, 3) -> features (B, feature_dim()) chosen by ``cls_type``."""
        return self._readout(self.forward_tokens(points))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_idpt_keys(depth, num_group, prompt_layer, prompt_module, cls_type, prompt_k) -> None:
    """ValueError naming the IDPT model key that is wrong."""
    if prompt_module not in PROMPT_MODULES:
        raise ValueError(f"IDPT prompt_module must be one of {list(PROMPT_MODULES)}, got {prompt_module!r}")
    if cls_type not in CLS_TYPES:
        raise ValueError(f"IDPT cls_type must be one of {list(CLS_TYPES)}, got {cls_type!r}")
    if not _is_int(prompt_layer) or not 0 <= prompt_layer < depth:
        raise ValueError(f"IDPT prompt_layer must be an integer in [0, depth - 1] = [0, {depth - 1}], "
                         f"got {prompt_layer!r}")
    if not _is_int(prompt_k) or prompt_k < 1:
        raise ValueError(f"IDPT prompt_k must be an integer >= 1, got {prompt_k!r}")
    if EDGE_CONVS.get(prompt_module, 0) > 0 and prompt_k > num_group:
        raise ValueError(f"IDPT prompt_k ({prompt_k}) must be <= num_group ({num_group}): the "
                         f"{prompt_module} prompt generator links each point token to its prompt_k nearest")
