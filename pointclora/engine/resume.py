"""`--resume` with a config that differs from the checkpoint's: one rule, and files that tell the truth.

Rule: a changed key is refused (one line listing the changed keys, exit 2) unless
`--resume-override` is given. With it, the new values are applied for the rest of the run,
including the optimizer's lr / weight_decay / betas / eps, which a loaded optimizer and
scheduler state would otherwise keep from the checkpoint; config.yaml and every later
checkpoint hold the new config, and the checkpoint and results.json list each override under
'resume_overrides' ({'after_epoch', 'changes'}). Keys fixed by what the checkpoint holds
(the model's and the adapters' structure, the dataset, the batch size that the CoTo and
step counts depend on) cannot be overridden: start a new run for those.
"""
from __future__ import annotations

from typing import Mapping

IGNORED = ("output_dir", "ckpts")  # where the run lives and its starting weights: not part of its state
FIXED_PREFIXES = ("model.", "adapter.", "dataset.NAME", "train.batch_size")


def config_changes(old: Mapping, new: Mapping, prefix: str = "") -> list[tuple[str, object, object]]:
    """[(dotted key, old value, new value)] of the keys that differ (IGNORED left out)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        dotted = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_changes(a, b, dotted + ".")
        elif a != b and dotted not in IGNORED:
            out.append((dotted, a, b))
    return out


def describe(changes) -> list[str]:
    return [f"{key}: {a!r} -> {b!r}" for key, a, b in changes]


def check_resume(old_cfg: Mapping, cfg: Mapping, override: bool) -> list[str]:
    """Applies the rule above; returns the changes (as 'key: old -> new') that --resume-override allows.

    Raises ValueError listing the changed keys when the rule refuses them."""
    changes = config_changes(old_cfg, cfg)
    if not changes:
        return []
    listed = "; ".join(describe(changes))
    if not override:
        raise ValueError(f"--resume: the config differs from the checkpoint's in {len(changes)} key(s): {listed}. "
                         "Resume with the checkpoint's values, or pass --resume-override to apply the new ones "
                         "(recorded in config.yaml, the checkpoint and results.json)")
    coto = bool((cfg.get("adapter") or {}).get("coto"))
    fixed = [key for key, _, _ in changes if key.startswith(FIXED_PREFIXES) or (coto and key == "train.epochs")]
    if fixed:
        why = "the checkpoint's weights, data and step counts depend on them"
        if coto and "train.epochs" in fixed:
            why += "; the CoTo schedule's length is stored in the checkpoint"
        raise ValueError(f"--resume-override: {', '.join(fixed)} cannot change on resume ({why}); "
                         "start a new run (another --output-dir) instead")
    return describe(changes)


def apply_optimizer_config(optimizer, scheduler, fresh) -> None:
    """Gives the loaded `optimizer` / `scheduler` the hyperparameters of `fresh`, an optimizer
    built from the new config for the same model (same parameter groups, in the same order)."""
    for group, new in zip(optimizer.param_groups, fresh.param_groups):
        for key in ("weight_decay", "betas", "eps"):
            group[key] = new[key]
    scheduler.base_lrs = [g["lr"] for g in fresh.param_groups]
    scheduler.load_state_dict(scheduler.state_dict())  # re-applies the schedule at the current epoch


def check_epochs(start_epoch: int, epochs: int) -> None:
    """A checkpoint that already finished more epochs than train.epochs has nothing left to do."""
    if start_epoch > epochs:
        raise ValueError(f"--resume: the checkpoint has already finished {start_epoch} epochs but train.epochs={epochs}; "
                         f"nothing to train (give train.epochs > {start_epoch} to train on, or use --test)")
