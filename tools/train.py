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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout too

from pointclora.cli import message  # noqa: E402
from pointclora.config import ConfigError, get_by_dotted  # noqa: E402
from pointclora.engine.options import FINETUNE, RunOptions, parse_options  # noqa: E402
from pointclora.engine.runner import main as run, run_cli  # noqa: E402
from pointclora.sweep import grid, parse_indices, run_sweep  # noqa: E402


def parse_args(argv=None) -> RunOptions:
    return parse_options(FINETUNE, __doc__.split("\n\n")[0], argv)


def run_folds(args: RunOptions) -> int:
    """--folds: the folds one after the other in this process, then the sweep report (mean ± std)."""
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
        print(f"error: {message(err)}", file=sys.stderr, flush=True)
        return 2
    print(summary["text"])
    print("written " + ", ".join(summary["files"].values()))
    return 1 if summary["failed"] else 0


def main(argv=None) -> int:
    options = parse_args(argv)
    if options.folds is not None:
        return run_folds(options)
    return run_cli(run, options)


if __name__ == "__main__":
    sys.exit(main())
