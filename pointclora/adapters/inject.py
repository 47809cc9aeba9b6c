"""Put adapters into a model and take them out again: apply, merge / unmerge / unload, save / load, count.

`apply_adapters` wraps the target nn.Linear layers in place, freezes everything except the adapters
and `trainable_modules`, keeps CLoRA's shared banks in `model.clora_banks` and the config in
`model.adapter_config`. For the methods that change the block forward (DAPT, IDPT, PointGST;
a `MethodConfig`) it returns a new model, the method's variant of the backbone (see
`pointclora.adapters.methods`): always use the returned model. Adapter files are safetensors holding the adapter parameters and the
trainable head (parameters and buffers), with the config as JSON in the metadata.
"""
from __future__ import annotations

import contextlib
import copy
import os
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import safetensors
import safetensors.torch
from torch import nn

from ..io import atomic_path

from .base import AdapterLayer
from .clora import CLoRABank, CLoRALinear, sade_loss
from .config import AdapterConfig
from .lora import LoRALinear
from .methods import MethodConfig, apply_method, is_method_model, trainable_tensor_names
from .patterns import check_trainable_patterns, is_trainable_name, matches

BANKS_ATTR = "clora_banks"
CONFIG_ATTR = "adapter_config"
_METADATA_KEY = "pointclora_adapter_config"
# Fields that change the adapted function; the others (seed, dropout, sade, coto) only affect training.
_STRUCTURAL_FIELDS = ("method", "rank", "alpha", "num_bases", "placement", "scale", "target_modules", "exclude_modules")


def adapter_layers(model: nn.Module) -> List[Tuple[str, AdapterLayer]]:
    """(name, wrapper) of every adapter wrapper in the model."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AdapterLayer)]


def get_adapter_config(model: nn.Module) -> Optional[AdapterConfig]:
    return getattr(model, CONFIG_ATTR, None)


def _find_targets(model: nn.Module, config: AdapterConfig) -> List[str]:
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n]
    for pattern in config.target_modules:
        if not any(matches(n, pattern) for n in linear):
            raise ValueError(
                f"AdapterConfig.target_modules: {pattern!r} matches no nn.Linear of {type(model).__name__} "
                f"(some Linear layers: {linear[:6]})"
            )
    chosen = [n for n in linear if any(matches(n, p) for p in config.target_modules)]
    chosen = [n for n in chosen if not any(matches(n, p) for p in config.exclude_modules)]
    if not chosen:
        raise ValueError("AdapterConfig.exclude_modules excludes every target module")
    return chosen


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _bank_for(banks: nn.ModuleDict, layer: nn.Linear, config: AdapterConfig, gen: torch.Generator) -> CLoRABank:
    d_in = layer.in_features
    d_out = d_in if config.placement == "input" else layer.out_features
    key = f"{config.placement}_{d_in}x{d_out}"
    if key not in banks:
        w = layer.weight
        banks[key] = CLoRABank(config.num_bases, d_in, d_out, config.rank, gen, dtype=w.dtype, device=w.device)
    return banks[key]


def _wrap(layer: nn.Linear, config: AdapterConfig, banks: nn.ModuleDict, gen: torch.Generator) -> AdapterLayer:
    if config.method == "lora":
        return LoRALinear(layer, config.rank, config.lora_scaling, config.dropout, gen)
    bank = _bank_for(banks, layer, config, gen)
    return CLoRALinear(layer, bank, config.placement, config.scale, config.dropout)


def apply_adapters(model: nn.Module, config) -> nn.Module:
    """Wrap the target Linear layers of `model` in place and freeze all but adapters and head.

    Returns the same model. method='none' adds no adapter (linear probing of trainable_modules).
    A MethodConfig (DAPT, IDPT, PointGST) returns the method's variant of `model` instead.
    """
    if isinstance(config, MethodConfig):
        if getattr(model, CONFIG_ATTR, None) is not None:
            raise ValueError(f"{type(model).__name__} already has adapters ({getattr(model, CONFIG_ATTR).method})")
        model, config = apply_method(model, config)
        setattr(model, CONFIG_ATTR, config)
        return model
    if not isinstance(config, AdapterConfig):
        raise ValueError(f"config must be an AdapterConfig or a MethodConfig, got {type(config).__name__}")
    if adapter_layers(model) or hasattr(model, CONFIG_ATTR):
        raise ValueError(f"{type(model).__name__} already has adapters: merge_and_unload it first")
    if hasattr(model, BANKS_ATTR):
        raise ValueError(f"{type(model).__name__} already has an attribute {BANKS_ATTR!r}")
    config = config.for_model(model)  # the model's own default targets when the config sets none
    check_trainable_patterns(model, config.trainable_modules)
    targets = _find_targets(model, config) if config.method != "none" else []
    for param in model.parameters():
        param.requires_grad_(False)
    gen = torch.Generator().manual_seed(config.seed)
    banks = nn.ModuleDict()
    for name in targets:
        _set_submodule(model, name, _wrap(model.get_submodule(name), config, banks, gen))
    if len(banks):
        setattr(model, BANKS_ATTR, banks)
    adapter_names = set(_adapter_param_names(model))
    for name, param in model.named_parameters():
        if name in adapter_names or is_trainable_name(name, config.trainable_modules):
            param.requires_grad_(True)
    setattr(model, CONFIG_ATTR, config)
    return model


def _adapter_param_names(model: nn.Module) -> List[str]:
    names = list(model.adapter_parameter_names()) if is_method_model(model) else []
    for prefix, module in model.named_modules():
        if isinstance(module, AdapterLayer):
            names += [f"{prefix}.{n}" for n, _ in module.named_parameters() if not n.startswith("base_layer.")]
        elif isinstance(module, CLoRABank):
            names += [f"{prefix}.{n}" for n, _ in module.named_parameters()]
    return names


def adapter_regularization(model: nn.Module) -> torch.Tensor:
    """sade_weight * SADE for CLoRA, a zero scalar for LoRA / none. Add it to the task loss.

    Only adapters that are on enter the mean, so an adapter CoTo switched off gets no gradient.
    """
    config = get_adapter_config(model)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no adapters: call apply_adapters first")
    clora = [m for _, m in adapter_layers(model) if isinstance(m, CLoRALinear) and m.adapter_is_on()]
    if not clora or config.sade_weight == 0:
        ref = next(model.parameters())
        return ref.new_zeros(())
    return config.sade_weight * sade_loss(clora)


def _refuse_unmergeable(model: nn.Module, what: str) -> None:
    config = get_adapter_config(model)
    if isinstance(config, MethodConfig):
        raise ValueError(f"{what}: {config.MERGE_NOTE}")


def merge_adapters(model: nn.Module) -> nn.Module:
    """Write every adapter into its base weight (checked for NaN/Inf first).

    DAPT / IDPT / PointGST cannot merge: ValueError saying why (MethodConfig.MERGE_NOTE).
    """
    _refuse_unmergeable(model, "merge_adapters")
    for _, layer in adapter_layers(model):
        layer.merge()
    return model


def unmerge_adapters(model: nn.Module) -> nn.Module:
    """Exact inverse of merge_adapters (up to float rounding)."""
    for _, layer in adapter_layers(model):
        layer.unmerge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge, then replace every wrapper by its plain nn.Linear and drop banks and config."""
    _refuse_unmergeable(model, "merge_and_unload")
    for name, layer in adapter_layers(model):
        layer.merge()
        _set_submodule(model, name, layer.base_layer)
    if hasattr(model, BANKS_ATTR):
        delattr(model, BANKS_ATTR)
    if hasattr(model, CONFIG_ATTR):
        delattr(model, CONFIG_ATTR)
    return model


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run the backbone alone inside the block (adapters must not be merged)."""
    if isinstance(get_adapter_config(model), MethodConfig):
        raise ValueError(f"adapters_disabled: {get_adapter_config(model).method} has no off switch here "
                         "(its variant is a different model, not a backbone with wrappers)")
    layers = [m for _, m in adapter_layers(model)]
    if any(m.merged for m in layers):
        raise RuntimeError("adapters are merged: unmerge_adapters(model) before disabling them")
    for m in layers:
        m.disabled = True
    try:
        yield model
    finally:
        for m in layers:
            m.disabled = False


def adapter_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Adapter parameters plus trainable head parameters and buffers, keyed as in model.state_dict()."""
    config = get_adapter_config(model)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no adapters: call apply_adapters first")
    if isinstance(config, MethodConfig):
        state = model.state_dict()
        return {k: state[k] for k in trainable_tensor_names(model, config)}
    keep = set(_adapter_param_names(model))
    return {
        k: v
        for k, v in model.state_dict().items()
        if k in keep or is_trainable_name(k, config.trainable_modules)
    }


def save_adapter(model: nn.Module, path: str) -> None:
    """Write adapter_state_dict(model) and the config (JSON metadata) to a .safetensors file."""
    if any(m.merged for _, m in adapter_layers(model)):
        raise RuntimeError("adapters are merged: unmerge_adapters(model) before save_adapter")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in adapter_state_dict(model).items()}
    try:
        with atomic_path(path) as tmp:  # a crash never leaves a truncated adapter file
            safetensors.torch.save_file(tensors, str(tmp),
                                        metadata={_METADATA_KEY: get_adapter_config(model).to_json(), "format": "pt"})
    except Exception as err:  # OSError, or safetensors' error for a failed write: name the target, not the temp file
        reason = getattr(err, "strerror", None) or str(err)
        raise OSError(f"save_adapter: cannot write '{path}': {reason}"
                      + ("; the previous file there is intact" if os.path.isfile(path) else "")) from err


def read_adapter_config(path: str):
    """The AdapterConfig stored in an adapter file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"adapter file not found: {path}")
    try:
        with safetensors.safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors' SafetensorError names no file
        raise ValueError(f"{path} is not a readable safetensors adapter file (truncated or corrupt: {err})") from None
    if _METADATA_KEY not in metadata:
        raise ValueError(f"{path} is not a pointclora adapter file (no {_METADATA_KEY!r} metadata)")
    return AdapterConfig.from_json(metadata[_METADATA_KEY])


def load_adapter(model: nn.Module, path: str) -> nn.Module:
    """Load an adapter file into `model`, applying its config first when the model has no adapters.

    Returns the model holding the adapter: for DAPT / IDPT / PointGST applied here, a new model."""
    stored = read_adapter_config(path)
    try:
        tensors = safetensors.torch.load_file(path)
    except Exception as err:  # a header that reads but a payload that does not
        raise ValueError(f"{path} is not a readable safetensors adapter file (truncated or corrupt: {err})") from None
    config = get_adapter_config(model)
    if config is not None:
        _check_same_structure(config, stored, path)
        if any(m.merged for _, m in adapter_layers(model)):
            raise RuntimeError("adapters are merged: unmerge_adapters(model) before load_adapter")
        target = model
    else:
        # a failed load must change nothing: adapters are applied in place only once the file fits
        target = apply_adapters(copy.deepcopy(model), stored)
    expected = adapter_state_dict(target)
    _check_fits(expected, tensors, path)
    if config is None:
        model = apply_adapters(model, stored)
        expected = adapter_state_dict(model)
    with torch.no_grad():
        for k, v in tensors.items():
            expected[k].copy_(v)
    return model


def _check_same_structure(config, stored, path: str) -> None:
    if type(config) is not type(stored):
        raise ValueError(f"adapter file {path} holds method {stored.method!r}, the model has {config.method!r}")
    fields = config.structural_fields if isinstance(config, MethodConfig) else _STRUCTURAL_FIELDS
    diff = [f for f in fields if getattr(config, f) != getattr(stored, f)]
    if diff:
        detail = ", ".join(f"{f}: file {getattr(stored, f)!r} vs model {getattr(config, f)!r}" for f in diff)
        raise ValueError(f"adapter file {path} was made with a different adapter config ({detail})")


def _check_fits(expected: Dict[str, torch.Tensor], tensors: Dict[str, torch.Tensor], path: str) -> None:
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise KeyError(f"adapter file {path} does not fit the model: missing {missing[:8]}, unexpected {extra[:8]}")
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
           for k, v in tensors.items() if v.shape != expected[k].shape]
    if bad:
        raise ValueError(f"adapter file {path} does not fit the model, shape mismatch: {'; '.join(bad[:8])}")


def count_parameters(model: nn.Module) -> Dict[str, int]:
    """{'total', 'trainable', 'adapter', 'head'} parameter counts (shared parameters counted once)."""
    params = dict(model.named_parameters())
    config = get_adapter_config(model)
    adapter = set(_adapter_param_names(model))
    head = {n for n in params if config is not None and is_trainable_name(n, config.trainable_modules)}
    return {
        "total": sum(p.numel() for p in params.values()),
        "trainable": sum(p.numel() for p in params.values() if p.requires_grad),
        "adapter": sum(params[n].numel() for n in adapter if n in params),
        "head": sum(params[n].numel() for n in head),
    }
