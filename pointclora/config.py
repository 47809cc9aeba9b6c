"""YAML experiment configs: `_base_` inheritance, command-line overrides, schema validation.

A config file may name one or several parents with `_base_` (a path or a list of paths,
relative to the including file); parents are merged left to right, then the file itself,
recursively (dicts merge key by key, everything else is replaced). `--opts a.b=value`
overrides are parsed as YAML values (`1e-4` is a float, `[1, 2]` a list, `null` None).
The merged config is validated against the schema `sections.build_schema()` derives from the
typed sections and the constructors: an unknown key, a wrong type or a value out of range is a
`ConfigError` naming the dotted key and the file (or `--opts`) it came from.
"""
from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .sections import OPTIONAL_SECTIONS, REQUIRED, Limits, SchedulerConfig, build_schema

REPO_ROOT = Path(__file__).resolve().parent.parent
# the shipped configs: configs/ of a source checkout (and editable install), or, in a plain
# `pip install .`, the copy installed as package data (setup.py maps pointclora.configs to configs/)
PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
CONFIG_DIR = PACKAGED_CONFIG_DIR if PACKAGED_CONFIG_DIR.is_dir() else REPO_ROOT / "configs"
NoneType = type(None)
Number = (int, float)


class ConfigError(ValueError):
    """A config file, key or override is invalid; the message names the key and the file."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-4` (no dot) as a float, as YAML 1.2 does."""


_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
    r"|\.[0-9_]+(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_Loader.yaml_implicit_resolvers = copy.deepcopy(yaml.SafeLoader.yaml_implicit_resolvers)


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """PyYAML silently keeps the last of two equal keys; a config with both is a mistake."""
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (line {key_node.start_mark.line + 1})", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))

def resolve_config_path(name: str | os.PathLike) -> Path:
    """Returns the config file for `name`: the path itself when it exists, else configs/<name>.

    Raises FileNotFoundError naming both places when neither exists.
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    for candidate in (CONFIG_DIR / path, CONFIG_DIR / path.name):
        if candidate.is_file():
            return candidate.resolve()
        if candidate.with_suffix(".yaml").is_file():
            return candidate.with_suffix(".yaml").resolve()
    raise FileNotFoundError(f"--config: no file '{name}' (looked at {path.resolve()} and in {CONFIG_DIR})")


def resolve_path(path: str | os.PathLike) -> Path:
    """A relative path is taken from the current directory, or from the repository root when it
    exists only there (so the shipped configs work from any directory)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists() or not (REPO_ROOT / p).exists():
        return p.resolve()
    return (REPO_ROOT / p).resolve()


def merge(base: Mapping, override: Mapping) -> dict:
    """Recursively merges `override` into a copy of `base`; non-dict values are replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=_Loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def _load_tree(path: Path, sources: dict, stack: tuple) -> dict:
    """Loads `path` with its `_base_` parents; `sources` maps dotted keys to the file that set them."""
    if path in stack:
        raise ConfigError(f"{path}: _base_ cycle: {' -> '.join(map(str, stack + (path,)))}")
    data = _read_yaml(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: key '_base_' must be a path or a list of paths, got {bases!r}")
    merged: dict = {}
    for base in bases:
        base_path = (path.parent / base).resolve()
        if not base_path.is_file():
            raise FileNotFoundError(f"{path}: _base_ file '{base}' not found (looked at {base_path})")
        merged = merge(merged, _load_tree(base_path, sources, stack + (path,)))
    _record_sources(data, str(path), sources)
    return merge(merged, data)


def _record_sources(data: Mapping, source: str, sources: dict, prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        sources[dotted] = source
        if isinstance(value, Mapping):
            _record_sources(value, source, sources, dotted + ".")


def parse_opts(opts: Iterable[str] | None) -> list[tuple[str, Any]]:
    """Parses `["optimizer.lr=1e-4", "model.depth=6"]` into (dotted key, YAML value) pairs."""
    pairs = []
    for opt in opts or []:
        key, sep, raw = opt.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--opts: expected key.sub=value, got '{opt}'")
        try:
            value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--opts: value of '{key}' is not valid YAML: {err}") from None
        pairs.append((key.strip(), value))
    return pairs


def set_by_dotted(cfg: dict, key: str, value: Any) -> None:
    """Sets cfg['a']['b'] = value for key 'a.b', creating intermediate dicts."""
    node = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part, {}), dict):
            raise ConfigError(f"--opts: '{key}': '{part}' is not a section")
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def get_by_dotted(cfg: Mapping, key: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _type_ok(value: Any, expected) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in types:
        return False  # bool is an int subclass: `depth: true` is still a type error
    return isinstance(value, types)


def _type_name(expected) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    names = {"NoneType": "null"}
    return " or ".join(names.get(t.__name__, t.__name__) for t in types)


def _value_problem(dotted: str, value: Any, limits: Limits) -> str | None:
    """What is wrong with a well-typed value (None when nothing): ranges, NaN / inf, choices, betas."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if dotted in limits.minimum and value is not None:
        low, inclusive = limits.minimum[dotted]
        if value < low or (value == low and not inclusive):
            return f"must be {'>=' if inclusive else '>'} {low}, got {value!r}"
    if dotted in limits.choices and value not in limits.choices[dotted]:
        return f"must be one of {list(limits.choices[dotted])}, got {value!r}"
    if dotted == "optimizer.betas":
        ok = len(value) == 2 and all(_type_ok(b, Number) and math.isfinite(b) and 0 <= b < 1 for b in value)
        if not ok:
            return f"must be two numbers in [0, 1), e.g. [0.9, 0.999], got {value!r}"
    return None


def validate(cfg: Mapping, sources: Mapping | None = None, schema: Mapping | None = None, prefix: str = "",
             required: Iterable[str] = REQUIRED, limits: Limits | None = None) -> None:
    """Raises ConfigError for an unknown key, a wrong type or value, or a missing `required` key.

    schema / limits: default `sections.build_schema()`, derived from the typed sections and the
    registered model, dataset and adapter-method constructors."""
    if schema is None:
        schema, limits = build_schema()
    sources, limits = sources or {}, limits or Limits()
    for key, value in cfg.items():
        dotted = f"{prefix}{key}"
        where = sources.get(dotted, "<command line or defaults>")
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ConfigError(f"{where}: unknown key '{dotted}' (known keys here: {known})")
        expected = schema[key]
        if isinstance(expected, dict):
            if value is None and dotted in OPTIONAL_SECTIONS:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: key '{dotted}' must be a mapping, got {type(value).__name__}")
            validate(value, sources, expected, dotted + ".", (), limits)
        elif not _type_ok(value, expected):
            raise ConfigError(
                f"{where}: key '{dotted}' must be {_type_name(expected)}, got {type(value).__name__} {value!r}"
            )
        elif _value_problem(dotted, value, limits):
            raise ConfigError(f"{where}: key '{dotted}' {_value_problem(dotted, value, limits)}")
    if not prefix:
        for key in required:
            if get_by_dotted(cfg, key) is None:
                raise ConfigError(f"config: required key '{key}' is missing")
        _check_warmup(cfg, sources)


WARMUP_DEFAULT = SchedulerConfig.__dataclass_fields__["warmup_epochs"].default


def _check_warmup(cfg: Mapping, sources: Mapping) -> None:
    """scheduler.warmup_epochs must not exceed train.epochs (the warm-up would never end; the
    scheduler refuses it, but only after the data is read or generated). Equal is a valid schedule
    (every epoch warms up), which the scheduler accepts."""
    epochs = get_by_dotted(cfg, "train.epochs")
    warmup = get_by_dotted(cfg, "scheduler.warmup_epochs", WARMUP_DEFAULT)
    if not isinstance(epochs, int) or not isinstance(warmup, int) or warmup <= epochs:
        return
    where_warmup = sources.get("scheduler.warmup_epochs", "the default")
    where_epochs = sources.get("train.epochs", "the config")
    raise ConfigError(
        f"key 'scheduler.warmup_epochs' is {warmup} ({where_warmup}), more than 'train.epochs' {epochs} "
        f"({where_epochs}): the warm-up would never end; set it to at most {epochs}, "
        f"e.g. --opts scheduler.warmup_epochs=0"
    )


def load_config(name: str | os.PathLike, opts: Iterable[str] | None = None) -> dict:
    """Loads, merges, overrides and validates a config; returns a plain dict.

    `name` is a path or a bare file name looked up in configs/. Errors name the key and the
    file (or `--opts`) that set it.
    """
    path = resolve_config_path(name)
    sources: dict = {}
    cfg = _load_tree(path, sources, ())
    for key, value in parse_opts(opts):
        set_by_dotted(cfg, key, value)
        sources[key] = "--opts"
        if isinstance(value, Mapping):
            _record_sources(value, "--opts", sources, key + ".")
    validate(cfg, sources)
    return cfg


def save_config(cfg: Mapping, path: str | os.PathLike) -> None:
    """Writes the resolved config as YAML (readable back with `load_config`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(dict(cfg), f, sort_keys=False, default_flow_style=None)
