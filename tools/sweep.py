#!/usr/bin/env python
"""Run a config over seeds x methods x folds and report mean ± std per setting and protocol.

    python tools/sweep.py --config demo_clora.yaml --seeds 0 1 2 --methods full,lora,clora,clora_coto
    python tools/sweep.py --config demo_clora.yaml --methods clora,dapt,idpt,pointgst   # the peer methods
    python tools/sweep.py --config fewshot_clora.yaml --ckpts pretrain.pth --opts dataset.way=5 dataset.shot=10 \\
        --folds 0-9
    python tools/sweep.py --config demo_clora.yaml --seeds 0 1 --out runs/sweep   # again: finished runs are skipped

Runs go one after the other (one per GPU at a time when several GPUs are visible), each a
tools/train.py process with its own folder <out>/<method>/fold<k>/seed<s>. A killed sweep run again
skips finished runs and continues unfinished ones with --resume. Writes <out>/sweep.md, sweep.json,
sweep.csv and sweep.png. Exit status: 0 when every run finished, 1 when some failed, 2 for bad input.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout too

from pointclora.config import ConfigError  # noqa: E402
from pointclora.sweep import METHODS, parse_indices, run_sweep  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="YAML config: a path, or a file name in configs/")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="train.seed values (default: 0)")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated: {','.join(METHODS)} (default: the config's own adapter)")
    p.add_argument("--folds", default=None, help="dataset.fold values: '0-9', '0,3,5' (few-shot ModelNet40)")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    p.add_argument("--ckpts", default=None, help="pre-trained backbone for every run")
    p.add_argument("--out", default=None, help="sweep folder (default: runs/sweep_<config name>)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--parallel", type=int, default=1, help="CPU only: runs at a time (GPUs: one per GPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU only: torch threads per run")
    p.add_argument("--in-process", action="store_true", help="run tools/train.py in this process (tests)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
        folds = parse_indices(args.folds, "--folds") if args.folds is not None else None
        if args.parallel < 1 or (args.threads is not None and args.threads < 1):
            raise ValueError(f"--parallel / --threads: expected >= 1, got {args.parallel} / {args.threads}")
        out = args.out or str(Path("runs") / f"sweep_{Path(args.config).stem}")
        summary = run_sweep(args.config, out, seeds=args.seeds, methods=methods, folds=folds, opts=args.opts,
                            device=args.device, ckpts=args.ckpts, parallel=args.parallel, threads=args.threads,
                            in_process=args.in_process,
                            command=" ".join(["tools/sweep.py", *map(shlex.quote, argv if argv is not None
                                                                       else sys.argv[1:])]))
    except (ValueError, ConfigError, FileNotFoundError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {msg}", file=sys.stderr, flush=True)
        return 2
    print(summary["text"])
    print("written " + ", ".join(summary["files"].values()))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
