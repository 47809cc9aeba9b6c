"""Weight files: the one way weights enter a pointclora model (``load_weights``), below models,
adapters and engine alike. Official Point-MAE / Point-BERT / ACT checkpoints and our own.

Layouts read: ``{'base_model': sd}`` (Point-MAE, Point-BERT), ``{'model': sd}``, ``{'state_dict': sd}``,
``{'model_state_dict': sd}`` (Point-MAE part segmentation) or a bare state dict; ``module.``
prefixes (DDP); pre-training prefixes ``MAE_encoder.``, ``base_model.``, ``ACT_encoder.`` and
``transformer_q.`` (Point-BERT, minus its ``cls_head``), each stripped only when the model itself
has no key with that prefix (so a PointMAEPretrain checkpoint still loads into PointMAEPretrain).

Files are read with ``torch.load(weights_only=True)``: a downloaded file cannot run code. The only
non-tensor types allowed are numpy scalars and dtypes, which Point-MAE's part-segmentation
checkpoint stores for its metrics (``np.float64`` accuracies).

``load_weights`` serves pre-trained backbones (``pointclora.models.load_pretrained``), fine-tuned
files, training checkpoints and the backbone copied into a method's variant.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np
import torch
from torch import nn

STATE_DICT_KEYS = ("base_model", "model", "state_dict", "model_state_dict")
PRETRAIN_PREFIXES = ("MAE_encoder.", "base_model.", "ACT_encoder.", "transformer_q.")
DROPPED_PREFIXES = ("transformer_q.cls_head.",)  # Point-BERT's contrastive head: never loaded
OFFICIAL_CHECKPOINTS = (
    "Official checkpoints (download them yourself; nothing is downloaded at run time): Point-MAE "
    "pretrain.pth, scan_objbg.pth, scan_objonly.pth, scan_hardest.pth, modelnet_1k.pth, modelnet_8k.pth, "
    "part_seg.pth from the Point-MAE GitHub releases (https://github.com/Pang-Yatian/Point-MAE/releases); "
    "Point-BERT.pth (pre-trained) and the fine-tuned ModelNet/ScanObjectNN Transformers from the links "
    "(Tsinghua Cloud / BaiduYun) in the Point-BERT README (https://github.com/lulutang0608/Point-BERT)."
)


def _numpy_safe_globals() -> List[Any]:
    """numpy scalar and array reconstruction types: np.float64 metrics in official checkpoints,
    the numpy RNG state (a uint32 array) in pointclora's training checkpoints."""
    core = getattr(np, "_core", None) or np.core
    types = [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype]
    types += [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.uint32, np.bool_)]
    return types


def load_weights_only(path: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU with the numpy types above allowed: a
    downloaded file cannot run code. FileNotFoundError / ValueError name the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}. {OFFICIAL_CHECKPOINTS}")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors all mean "not a readable checkpoint"
        raise ValueError(f"{path} is not a PyTorch checkpoint readable with weights_only=True: {err}") from err


def read_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Read ``path`` and return its model state dict (tensors only), whatever the official layout.

    Raises FileNotFoundError (with where the official files are published) or ValueError naming
    the file when it is not a checkpoint or holds no state dict.
    """
    return _extract_state_dict(load_weights_only(path), os.fspath(path))


def _extract_state_dict(obj: Any, path: str) -> Dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    for key in STATE_DICT_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors or len(tensors) != len(obj):
        raise ValueError(f"{path} holds no state dict: expected a dict of tensors or one under "
                         f"{list(STATE_DICT_KEYS)}, found keys {list(obj)[:10]}")
    return tensors


def remap_state_dict(state_dict: Mapping[str, torch.Tensor], model_keys) -> Dict[str, torch.Tensor]:
    """Strip ``module.`` and the pre-training prefixes the model does not use itself."""
    model_keys = set(model_keys)
    used = {p for p in PRETRAIN_PREFIXES if any(k.startswith(p) for k in model_keys)}
    out = {}
    for key, value in state_dict.items():
        while key.startswith("module."):
            key = key[len("module."):]
        if not key.startswith(DROPPED_PREFIXES):
            for prefix in PRETRAIN_PREFIXES:
                if key.startswith(prefix) and prefix not in used:
                    key = key[len(prefix):]
                    break
        out[key] = value
    return out


class WeightsMismatch(ValueError, KeyError):
    """Weights that do not fit a model (missing, unexpected or mis-shaped tensors), in one message
    naming the file. A ValueError (a bad file for this model) and, as strict loading raised before,
    a KeyError."""

    __str__ = ValueError.__str__  # the message itself, not KeyError's quoted repr


def load_weights(model: nn.Module, source: str | os.PathLike, state: Mapping[str, Any] | None = None,
                 strict: bool = False, complete: bool = False) -> Tuple[List[str], List[str]]:
    """The one way weights enter a model. Reads ``source`` (``state``: what was already read from
    it, e.g. a training checkpoint's ``model``), takes its state dict from any layout above,
    strips ``module.`` and the pre-training prefixes the model does not use itself, and loads;
    returns (missing, unexpected).

    Raises WeightsMismatch naming ``source`` for any shape mismatch; with ``strict`` for any
    missing or unexpected key; with ``complete`` for any missing key (unexpected ones are left);
    otherwise (partial: a backbone into a model with a new head) when no tensor fits at all.
    Nothing is loaded when it raises.
    """
    source = os.fspath(source)
    own = model.state_dict()
    raw = load_weights_only(source) if state is None else state
    loaded = remap_state_dict(_extract_state_dict(raw, source), own.keys())
    missing = [k for k in own if k not in loaded]
    unexpected = [k for k in loaded if k not in own]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in loaded.items() if k in own and v.shape != own[k].shape]
    fits = not shapes and not (strict and unexpected) and not ((strict or complete) and missing)
    if own and len(missing) == len(own):
        raise WeightsMismatch(f"{source} does not fit {type(model).__name__}: none of its {len(own)} tensors "
                              f"matched ({len(unexpected)} unexpected keys, e.g. {unexpected[:3]})")
    if not fits:
        raise WeightsMismatch(f"{source} does not fit {type(model).__name__}: {len(missing)} missing keys "
                              f"{missing[:8]}, {len(unexpected)} unexpected keys {unexpected[:8]}, "
                              f"shape mismatches {shapes[:8]}")
    model.load_state_dict({k: v for k, v in loaded.items() if k in own}, strict=False)
    return missing, unexpected
