#!/usr/bin/env python
"""Fine-tune or evaluate a point-cloud transformer (full fine-tuning, LoRA, CLoRA, CoTo).

    python tools/train.py --config scanobjectnn_clora.yaml --ckpts pretrain.pth
    python tools/train.py --config configs/demo_clora.yaml
    torchrun --nproc_per_node 4 tools/train.py --config scanobjectnn_clora.yaml --ckpts pretrain.pth
    python tools/train.py --config scanobjectnn_clora.yaml --test --vote 10
    python tools/train.py --config fewshot_clora.yaml --ckpts pretrain.pth --opts dataset.way=5 dataset.shot=10 --folds 0-9

`--config` takes a path or a bare file name looked up in configs/. Bad input (missing data
or checkpoint, unknown model / adapter / dataset, a checkpoint that does not fit) stops with
one message before training starts (exit status 2).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout too


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="YAML config: a path, or a file name in configs/")
    p.add_argument("--ckpts", default=None,
                   help="pre-trained backbone for training; with --test the checkpoint to evaluate")
    p.add_argument("--resume", action="store_true", help="continue from <output_dir>/ckpt-last.pth")
    p.add_argument("--resume-override", action="store_true",
                   help="--resume with a changed config: apply the changed keys (refused without this flag)")
    p.add_argument("--test", action="store_true", help="evaluate <output_dir>/ckpt-best.pth (or --ckpts)")
    p.add_argument("--vote", type=int, default=1, help="--test: passes averaged (scale-and-translate votes)")
    p.add_argument("--seed", type=int, default=None, help="overrides train.seed")
    p.add_argument("--output-dir", default=None, help="overrides output_dir")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. optimizer.lr=1e-4 model.depth=6")
    p.add_argument("--save-predictions", action="store_true", help="--test: write predictions.npz")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--max-epochs-this-run", type=int, default=None,
                   help="stop after this many epochs (the run continues later with --resume)")
    p.add_argument("--folds", default=None,
                   help="few-shot: train every fold ('0-9', '0,3,5') into <output_dir>/fold<k>/seed<s>/ and report mean ± std "
                        "(tools/sweep.py runs; a re-run skips finished folds)")
    return p.parse_args(argv)


def run_folds(args) -> int:
    """--folds: the folds one after the other in this process, then the sweep report (mean ± std)."""
    from pointclora.config import ConfigError, get_by_dotted
    from pointclora.sweep import grid, parse_indices, run_sweep

    try:
        for flag in ("test", "resume", "max_epochs_this_run"):
            if getattr(args, flag):
                raise ValueError(f"--folds cannot be combined with --{flag.replace('_', '-')} (a re-run of the same "
                                 "command skips finished folds and resumes unfinished ones)")
        folds = parse_indices(args.folds, "--folds")
        cfg = grid.load_base(args.config, args.opts)
        seed = args.seed if args.seed is not None else int(get_by_dotted(cfg, "train.seed", 0))
        out = args.output_dir or cfg.get("output_dir") or str(Path("runs") / Path(args.config).stem)
        summary = run_sweep(args.config, out, seeds=[seed], folds=folds, opts=args.opts, device=args.device,
                            ckpts=args.ckpts, in_process=True, title=f"Folds of {Path(args.config).name}",
                            command=" ".join(["tools/train.py", *sys.argv[1:]]))
    except (ValueError, ConfigError, FileNotFoundError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {msg}", file=sys.stderr, flush=True)
        return 2
    print(summary["text"])
    print("written " + ", ".join(summary["files"].values()))
    return 1 if summary["failed"] else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.folds is not None:
        return run_folds(args)
    from pointclora.engine.runner import main as run
    from pointclora.engine.runner import run_cli

    return run_cli(run, args)

if __name__ == "__main__":
    sys.exit(main())
