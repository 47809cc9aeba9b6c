"""Module-name patterns: how `target_modules`, `exclude_modules` and `trainable_modules` select
modules and parameters (shared by AdapterConfig, the method configs and the code that applies them).

A pattern matches a dotted module or parameter name when it is the exact name, a dotted suffix of
it (`attn.qkv` matches `blocks.blocks.3.attn.qkv`) or a regular expression that matches the whole
name (`blocks\\.blocks\\.[0-5]\\.attn\\.qkv`).
"""
from __future__ import annotations

import re
from typing import Any, List

from torch import nn

from ..models.base import CLASSIFICATION_HEAD

# Point-MAE fine-tuning trains the classification head and the class token / its position embedding:
# the models declare it (models.base.CLASSIFICATION_HEAD, PointMAE.HEAD_MODULES).
DEFAULT_TRAINABLE = list(CLASSIFICATION_HEAD)


def matches(name: str, pattern: str) -> bool:
    """True when `pattern` is `name`, a dotted suffix of it, or a regex matching all of it."""
    if name == pattern or name.endswith("." + pattern):
        return True
    return re.fullmatch(pattern, name) is not None


def as_pattern_list(value: Any, field_name: str) -> List[str]:
    """`value` (a pattern, a list of them or None) as a list of valid patterns; ValueError naming
    ``AdapterConfig.<field_name>`` otherwise."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"AdapterConfig.{field_name} must be a list of non-empty strings, got {value!r}")
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"AdapterConfig.{field_name}: {pattern!r} is not a valid regex ({err})") from None
    return list(value)


def is_trainable_name(name: str, patterns: List[str]) -> bool:
    """True when the parameter/buffer `name` or one of its parent modules matches a pattern."""
    parts = name.split(".")
    return any(matches(".".join(parts[:i]), p) for i in range(1, len(parts) + 1) for p in patterns)


def check_trainable_patterns(model: nn.Module, patterns: List[str]) -> None:
    """ValueError naming the first pattern of `trainable_modules` that selects no parameter of `model`."""
    names = [n for n, _ in model.named_parameters()]
    for pattern in patterns:
        if not any(is_trainable_name(n, [pattern]) for n in names):
            raise ValueError(
                f"AdapterConfig.trainable_modules: {pattern!r} matches no parameter of {type(model).__name__}"
            )
