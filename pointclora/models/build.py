"""Model registry and ``build_model(cfg)`` from a config mapping with the official model keys.

Official Point-MAE / Point-BERT configs name their fine-tuning model ``PointTransformer`` and the
Point-MAE pre-training model ``Point_MAE`` (with a nested ``transformer_config``): both are
accepted and the model they were taken as is logged. The IDPT repository also names its model
``PointTransformer``; its configs are told apart by the keys ``prompt_layer`` / ``prompt_module`` /
``cls_type``, which build ``PointMAEIDPT``.
"""
import inspect
import logging
from typing import Any, Callable, Dict, Mapping

from torch import nn

from ..adapters.methods import register_variant
from .dapt import PointMAEDAPT
from .idpt import IDPT_KEYS, PointMAEIDPT
from .part_seg import PointMAEPartSeg
from .pointgst import PointMAEPGST
from .point_bert import PointBERT
from .point_mae import PointMAE
from .point_mae_pretrain import PointMAEPretrain

logger = logging.getLogger(__name__)

MODELS: Dict[str, Callable[..., nn.Module]] = {
    "PointMAE": PointMAE,
    "PointBERT": PointBERT,
    "PointMAEPartSeg": PointMAEPartSeg,
    "PointMAEPretrain": PointMAEPretrain,
    "PointMAEDAPT": PointMAEDAPT,
    "PointMAEPGST": PointMAEPGST,
    "PointMAEIDPT": PointMAEIDPT,
}
# the peer methods' variants, each built from a Point-MAE backbone by adapters.apply_adapters
for _variant in (PointMAEDAPT, PointMAEPGST, PointMAEIDPT):
    register_variant(_variant, PointMAE)
# official NAMEs of the method variants -> ours (their configs keep the official keys)
OFFICIAL_NAMES = {"PointTransformer_DAPT": "PointMAEDAPT", "PointTransformer_PGST": "PointMAEPGST"}


def register_model(name: str, cls: Callable[..., nn.Module]) -> None:
    """Add a model class to the registry (keyword-only constructor arguments = config keys)."""
    if name in MODELS:
        raise KeyError(f"model NAME {name!r} is already registered")
    MODELS[name] = cls


def _resolve_alias(name: str, cfg: Dict[str, Any]) -> str:
    """Map the official config NAMEs onto ours, logging what they were taken as."""
    if name == "PointTransformer" and IDPT_KEYS & set(cfg):
        # the IDPT repository's PointTransformer: Point-MAE plus an instance prompt
        logger.info("model NAME 'PointTransformer' taken as 'PointMAEIDPT' (has %s)", sorted(IDPT_KEYS & set(cfg)))
        return "PointMAEIDPT"
    if name == "PointTransformer":
        # Point-BERT's configs have encoder_dims 256 (bridged by reduce_dim), Point-MAE's 384
        taken = "PointBERT" if cfg.get("encoder_dims") != cfg.get("trans_dim") else "PointMAE"
        logger.info("model NAME 'PointTransformer' taken as %r (encoder_dims=%s, trans_dim=%s)",
                    taken, cfg.get("encoder_dims"), cfg.get("trans_dim"))
        return taken
    if name in OFFICIAL_NAMES:
        logger.info("model NAME %r taken as %r", name, OFFICIAL_NAMES[name])
        return OFFICIAL_NAMES[name]
    if name == "Point_MAE":
        logger.info("model NAME 'Point_MAE' (official pre-training model) taken as 'PointMAEPretrain'")
        return "PointMAEPretrain"
    return name


def _flatten(cfg: Mapping) -> Dict[str, Any]:
    """Copy cfg into a plain dict; the official pre-training ``transformer_config`` is merged in."""
    flat = {k: v for k, v in cfg.items() if k != "transformer_config"}
    nested = cfg.get("transformer_config")
    if nested is not None:
        if not isinstance(nested, Mapping):
            raise TypeError(f"model config key 'transformer_config' must be a mapping, got {type(nested).__name__}")
        clash = sorted(set(nested) & set(flat))
        if clash:
            raise ValueError(f"model config keys {clash} appear both at top level and in 'transformer_config'")
        flat.update(nested)
    return flat


def config_keys(cls: Callable[..., nn.Module]):
    """(required, optional) keyword names of a registered model's constructor."""
    params = inspect.signature(cls.__init__).parameters.values()
    kw = [p for p in params if p.kind == p.KEYWORD_ONLY]
    return [p.name for p in kw if p.default is p.empty], [p.name for p in kw if p.default is not p.empty]


def _lookup(cfg: Mapping):
    """-> (registry name, class, flat keyword arguments) of a model config."""
    if not isinstance(cfg, Mapping):
        raise TypeError(f"model config must be a mapping with a NAME key, got {type(cfg).__name__}")
    flat = _flatten(cfg)
    if "NAME" not in flat:
        raise KeyError(f"model config has no 'NAME' key; known names: {sorted(MODELS)}")
    name = _resolve_alias(str(flat.pop("NAME")), flat)
    if name not in MODELS:
        raise KeyError(f"unknown model NAME {name!r}; known names: {sorted(MODELS)} "
                       f"(aliases: 'PointTransformer', 'Point_MAE', {', '.join(repr(k) for k in OFFICIAL_NAMES)})")
    return name, MODELS[name], flat


def model_class(cfg: Mapping) -> type:
    """The class a model config builds (aliases resolved): its description (TASK, HEAD_MODULES, ...)
    without building it."""
    return _lookup(cfg)[1]


def build_model(cfg: Mapping) -> nn.Module:
    """Build a model from a config mapping: ``NAME`` plus the model's keys (official names:
    trans_dim, depth, drop_path_rate, cls_dim, num_heads, group_size, num_group, encoder_dims, ...).

    Unknown NAME -> KeyError listing the known names; missing or unknown keys -> KeyError naming them.
    """
    name, cls, flat = _lookup(cfg)
    required, optional = config_keys(cls)
    missing = [k for k in required if k not in flat]
    extra = sorted(k for k in flat if k not in required and k not in optional)
    if missing or extra:
        raise KeyError(f"model config for {name}: missing keys {missing}, unknown keys {extra}; "
                       f"required {required}, optional {optional}")
    return cls(**flat)
