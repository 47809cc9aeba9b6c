"""What a run is asked to do: the typed options of `tools/train.py` / `tools/pretrain.py`, the
resolved config they give, and how bad input found before training becomes one message."""
from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..config import load_config, set_by_dotted

FINETUNE, PRETRAIN = "finetune", "pretrain"  # the two kinds of run (tools/train.py, tools/pretrain.py)


@dataclass
class RunOptions:
    """The command-line flags of tools/train.py and tools/pretrain.py (same names, same defaults)."""

    config: str
    mode: str = FINETUNE  # FINETUNE (classification / part segmentation, by the model's TASK) or PRETRAIN
    ckpts: Optional[str] = None  # backbone to start from; with test: the checkpoint to evaluate
    resume: bool = False  # continue from <output_dir>/ckpt-last.pth
    resume_override: bool = False  # --resume with a changed config: apply the changed keys
    test: bool = False  # evaluate <output_dir>/ckpt-best.pth (or ckpts) on the test split
    vote: int = 1  # test: passes averaged (scale-and-translate votes)
    save_predictions: bool = False  # test: write predictions.npz
    seed: Optional[int] = None  # overrides train.seed
    output_dir: Optional[str] = None  # overrides output_dir
    opts: List[str] = field(default_factory=list)  # config overrides KEY=VALUE
    device: Optional[str] = None  # 'cpu' | 'cuda'; default cuda when available
    max_epochs_this_run: Optional[int] = None  # stop after this many epochs (continue with resume)
    folds: Optional[str] = None  # tools/train.py: few-shot folds run through pointclora.sweep ('0-9')


def build_parser(mode: str, description: str) -> argparse.ArgumentParser:
    """The flags of tools/train.py (FINETUNE) or tools/pretrain.py (PRETRAIN: no --test, --vote,
    --save-predictions); `parse_options` turns them into RunOptions."""
    finetune = mode == FINETUNE
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, help="YAML config: a path, or a file name in configs/")
    p.add_argument("--ckpts", default=None,
                   help="pre-trained backbone for training; with --test the checkpoint to evaluate" if finetune
                   else "Point-MAE pre-training checkpoint to continue from")
    p.add_argument("--resume", action="store_true", help="continue from <output_dir>/ckpt-last.pth")
    p.add_argument("--resume-override", action="store_true",
                   help="--resume with a changed config: apply the changed keys (refused without this flag)")
    if finetune:
        p.add_argument("--test", action="store_true", help="evaluate <output_dir>/ckpt-best.pth (or --ckpts)")
        p.add_argument("--vote", type=int, default=1, help="--test: passes averaged (scale-and-translate votes)")
    p.add_argument("--seed", type=int, default=None, help="overrides train.seed")
    p.add_argument("--output-dir", default=None, help="overrides output_dir")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. " + ("optimizer.lr=1e-4 model.depth=6" if finetune
                                                     else "train.epochs=10 model.mask_ratio=0.75"))
    if finetune:
        p.add_argument("--save-predictions", action="store_true", help="--test: write predictions.npz")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--max-epochs-this-run", type=int, default=None,
                   help="stop after this many epochs (the run continues later with --resume)")
    if finetune:
        p.add_argument("--folds", default=None,
                       help="few-shot: train every fold ('0-9', '0,3,5') into <output_dir>/fold<k>/seed<s>/ and report "
                            "mean ± std (tools/sweep.py runs; a re-run skips finished folds)")
    return p


def parse_options(mode: str, description: str, argv=None) -> RunOptions:
    return RunOptions(mode=mode, **vars(build_parser(mode, description).parse_args(argv)))


class SetupError(Exception):
    """Bad input found before training: one message, no traceback (the tools exit 2)."""


@contextlib.contextmanager
def preflight():
    """Turns the input errors of the set-up phase into a SetupError with their message."""
    try:
        yield
    except SetupError:
        raise
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, TypeError, ImportError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise SetupError(f"{type(err).__name__}: {msg}") from err


def resolve_run_config(options: RunOptions) -> dict:
    """Config file + --opts, then the dedicated flags (--seed, --output-dir, --ckpts) on top."""
    cfg = load_config(options.config, options.opts)
    if options.seed is not None:
        set_by_dotted(cfg, "train.seed", int(options.seed))
    if options.output_dir:
        cfg["output_dir"] = str(options.output_dir)
    cfg.setdefault("output_dir", str(Path("runs") / Path(options.config).stem))
    limit = options.max_epochs_this_run
    if limit is not None and limit < 1:
        raise ValueError(f"--max-epochs-this-run must be >= 1, got {limit}")
    if options.ckpts and not options.test:  # with --test, --ckpts is the checkpoint to evaluate
        cfg["ckpts"] = str(options.ckpts)
    return cfg


__all__ = ["FINETUNE", "PRETRAIN", "RunOptions", "SetupError", "build_parser", "parse_options", "preflight",
           "resolve_run_config"]
