"""Peer PEFT methods that change the block forward (DAPT, IDPT, PointGST): configs and plumbing.

Design
------
LoRA and CLoRA wrap single ``nn.Linear`` layers in place. DAPT (prompts from a dynamic adapter,
scale-and-shift factors), IDPT (instance-aware prompts) and PointGST (a spectral adapter beside the
MLP) change what a block computes and how many tokens it carries, so they cannot be a wrapper of
one layer. Each such method is instead

1. a **model variant** in ``pointclora/models/<method>.py`` (a ``PointMAE`` subclass with its own
   blocks, registered under our name and the official ``NAME``), whose attribute names are the
   official ones, so official configs build it (``build_model({"NAME": "PointTransformer_DAPT",
   ...})``) and official fine-tuned checkpoints load into it strictly; its adapter sub-modules
   live in ``pointclora/adapters/<method>.py`` (the profiler counts them as "adapters");
2. a **config dataclass** (a ``MethodConfig`` subclass registered with ``register_method``) whose
   fields are the method's official model keys. A field left ``None`` takes the value of a model
   that is already the variant, else the official default (``OFFICIAL``), so ``adapter: {method:
   dapt}`` works both on a Point-MAE backbone and on a model built from an official config.

``apply_adapters(backbone, config)`` calls ``apply_method``: it builds the variant (registered by
``pointclora.models`` with ``register_variant``, with the backbone class it is built from) from
the backbone's hyper-parameters, copies the backbone's tensors into it (the backbone itself is not
touched; the head is kept when its shape still fits), then applies the method's own freezing rule
(its ``adapter_parameter_names()`` plus ``trainable_modules``) and returns the NEW model. Callers
must use the returned model (``model = apply_adapters(model, cfg)``), as the engine does.

A variant implements: ``METHOD`` (the method name), ``from_backbone(backbone, config)``,
``method_fields()`` (its values of the config's structural fields), ``adapter_parameter_names()``.
None of these methods can be merged into the backbone's weights (their updates depend on the
input, or add tokens): ``merge_adapters`` raises with the config's ``MERGE_NOTE``.

BatchNorm: the official scripts keep every BatchNorm in train mode, so the frozen patch encoder's
running statistics keep updating during fine-tuning. ``freeze_bn_stats: false`` (default)
reproduces that; ``true`` keeps them frozen like the rest of this toolkit. With the official
setting the updated statistics are part of the adapter file.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from .fields import DictConfig, check_int, check_number, field_error
from .patterns import DEFAULT_TRAINABLE, as_pattern_list, check_trainable_patterns, is_trainable_name

METHOD_CONFIGS: Dict[str, type] = {}  # method name -> MethodConfig subclass
METHOD_MODELS: Dict[str, str] = {}  # method name -> registry NAME of its model variant
# method name -> (model variant class, the backbone class it is built from); filled by pointclora.models
VARIANTS: Dict[str, Tuple[type, type]] = {}


def register_method(name: str, config_cls: type, model_name: str) -> None:
    """Register a model-variant method: its config class and the model registry NAME it builds."""
    if name in METHOD_CONFIGS:
        raise KeyError(f"adapter method {name!r} is already registered")
    METHOD_CONFIGS[name] = config_cls
    METHOD_MODELS[name] = model_name


def register_variant(variant: type, backbone: type) -> None:
    """Register the model class of a method (its ``METHOD``, registered with ``register_method``)
    and the backbone class it is built from (``variant.from_backbone``). The models package does it
    for its variants, so the adapters never import the models they build."""
    if variant.METHOD not in METHOD_CONFIGS:
        raise KeyError(f"model variant {variant.__name__}: method {variant.METHOD!r} is not registered")
    VARIANTS[variant.METHOD] = (variant, backbone)


@dataclass
class MethodConfig(DictConfig):
    """Fields shared by every model-variant method (see the module docstring).

    trainable_modules: modules trained besides the method's own parameters (the task head and the
        class token / position, as the official 'cls' name rule).
    freeze_bn_stats: keep frozen BatchNorm statistics frozen (ours) instead of updating them (official).
    coto, coto_p_start, coto_ramp_fraction: CoTo progressive activation, where the method allows it.
    seed: seed of the adapter initialisation.
    """

    method: str = ""
    trainable_modules: List[str] = field(default_factory=lambda: list(DEFAULT_TRAINABLE))
    freeze_bn_stats: bool = False
    coto: bool = False
    coto_p_start: float = 0.1
    coto_ramp_fraction: float = 0.75
    seed: int = 0

    OFFICIAL: ClassVar[Dict[str, Any]] = {}  # structural field -> official default
    COTO_NOTE: ClassVar[Optional[str]] = None  # why CoTo does not apply (None: it applies)
    MERGE_NOTE: ClassVar[str] = "cannot be merged"
    sade_weight: ClassVar[float] = 0.0  # no regulariser (the engine reads it like AdapterConfig's)

    def __post_init__(self):
        name = type(self).__name__
        if self.method not in METHOD_CONFIGS or METHOD_CONFIGS[self.method] is not type(self):
            raise ValueError(f"{name}.method must be {self._method_name()!r}, got {self.method!r}")
        self.trainable_modules = as_pattern_list(self.trainable_modules, "trainable_modules")
        for flag in ("freeze_bn_stats", "coto"):
            if not isinstance(getattr(self, flag), bool):
                raise field_error(name, flag, "true or false", getattr(self, flag))
        if self.coto and self.COTO_NOTE:
            raise ValueError(f"{name}.coto: CoTo does not apply to {self.method}: {self.COTO_NOTE}")
        check_number(self.coto_p_start, "coto_p_start", 0.0, 1.0, False, False)
        check_number(self.coto_ramp_fraction, "coto_ramp_fraction", 0.0, 1.0, True, False)
        check_int(self.seed, "seed", 0)
        self.validate_fields()

    @classmethod
    def _method_name(cls) -> str:
        return next((k for k, v in METHOD_CONFIGS.items() if v is cls), "?")

    def validate_fields(self) -> None:
        """Check the method's own fields (None = resolved later); subclasses override."""

    @property
    def structural_fields(self) -> Tuple[str, ...]:
        return tuple(self.OFFICIAL)

    def resolved(self, model: Optional[nn.Module] = None) -> "MethodConfig":
        """A copy with every None field set from ``model`` (a variant already) or the official default;
        a field that is set but differs from the variant's value is an error naming it."""
        own = model.method_fields() if model is not None and hasattr(model, "method_fields") else {}
        values = {}
        for key, default in self.OFFICIAL.items():
            value = getattr(self, key)
            if key in own and value is not None and value != own[key]:
                raise ValueError(f"{type(self).__name__}.{key}={value!r} but the model was built with {key}={own[key]!r}")
            values[key] = own.get(key, default) if value is None else value
        return dataclasses.replace(self, **values)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MethodConfig":
        return cls.from_fields(d, f" for method={d.get('method')!r}" if isinstance(d, Mapping) else "")


def check_choice(config: MethodConfig, key: str, choices: Tuple[str, ...]) -> None:
    value = getattr(config, key)
    if value is not None and value not in choices:
        raise field_error(type(config).__name__, key, f"one of {list(choices)}", value)


def check_positive_int(config: MethodConfig, key: str) -> None:
    value = getattr(config, key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise field_error(type(config).__name__, key, "an integer >= 1", value)


def check_rate(config: MethodConfig, key: str) -> None:
    value = getattr(config, key)
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0.0 <= value < 1.0:
        raise field_error(type(config).__name__, key, "a number in [0, 1)", value)


# ----------------------------------------------------------------------------- apply / freeze


def is_method_model(model: nn.Module) -> bool:
    """True for a model variant of a method (it has ``METHOD`` and ``adapter_parameter_names``)."""
    return isinstance(getattr(model, "METHOD", None), str) and hasattr(model, "adapter_parameter_names")


def variant_classes(method: str) -> Tuple[type, type]:
    """(model variant class, backbone class) of a registered method."""
    if method not in VARIANTS:
        raise KeyError(f"adapter method {method!r}: its model variant {METHOD_MODELS.get(method)} is not "
                       "registered (pointclora.adapters.methods.register_variant)")
    return VARIANTS[method]


def apply_method(model: nn.Module, config: MethodConfig) -> Tuple[nn.Module, MethodConfig]:
    """(the method's variant of ``model``, the resolved config): the variant is built from
    ``model``'s parts, or is ``model`` itself when it already is the variant, and is frozen by the
    method's rule. ``apply_adapters`` calls it and stores the config on the model."""
    cls, backbone = variant_classes(config.method)
    if is_method_model(model):
        if model.METHOD != config.method:
            raise ValueError(f"adapter method {config.method!r} on a {model.METHOD} model ({type(model).__name__})")
        config = config.resolved(model)
    else:
        # exactly the backbone class: a subclass may compute something the variant would not carry over
        if type(model) is not backbone:
            raise ValueError(f"these methods adapt a Point-MAE backbone (NAME: {backbone.__name__}), "
                             f"got {type(model).__name__}")
        config = config.resolved()
        model = cls.from_backbone(model, config)
    freeze_by_rule(model, config)
    model.freeze_frozen_bn = config.freeze_bn_stats
    model.train(model.training)  # apply the BatchNorm rule now
    return model, config


def freeze_by_rule(model: nn.Module, config: MethodConfig) -> None:
    """Train the method's own parameters and ``trainable_modules``; freeze the rest."""
    check_trainable_patterns(model, config.trainable_modules)
    own = set(model.adapter_parameter_names())
    for name, param in model.named_parameters():
        param.requires_grad_(name in own or is_trainable_name(name, config.trainable_modules))


def bn_buffer_names(model: nn.Module) -> List[str]:
    """Running-statistics buffers of every BatchNorm (they change in training when not frozen)."""
    names = []
    for prefix, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            names += [f"{prefix}.{n}" for n, b in module.named_buffers(recurse=False) if b is not None]
    return names


def trainable_tensor_names(model: nn.Module, config: MethodConfig) -> List[str]:
    """State-dict keys an adapter file of this method holds: the method's parameters, the frozen
    tensors it adds to the backbone (``adapter_frozen_names()``, where a variant has them), the
    trainable modules (parameters and buffers) and, with official BatchNorm, every BN statistic."""
    keep = set(model.adapter_parameter_names())
    keep |= set(getattr(model, "adapter_frozen_names", list)())  # IDPT's prompt_pos
    if not config.freeze_bn_stats:
        keep |= set(bn_buffer_names(model))
    return [k for k in model.state_dict() if k in keep or is_trainable_name(k, config.trainable_modules)]


def seeded(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (the adapters' initialisation draws)."""
    return torch.Generator().manual_seed(seed)
