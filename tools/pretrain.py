#!/usr/bin/env python
"""Pre-train a Point-MAE backbone (masked point-patch autoencoder) on any dataset or a folder of point files.

    python tools/pretrain.py --config configs/pretrain_pointmae.yaml
    python tools/pretrain.py --config configs/demo_pretrain.yaml
    python tools/pretrain.py --config pretrain_pointmae.yaml --opts dataset.root=my_scans dataset.file_list=null
    torchrun --nproc_per_node 4 tools/pretrain.py --config pretrain_pointmae.yaml
    python tools/pretrain.py --config pretrain_pointmae.yaml --output-dir runs/pretrain_pointmae --resume

Labels are ignored, so ScanObjectNN / ModelNet40 / ShapeNetPart configs pre-train too. The run
writes <output_dir>/pretrain.pth in the official Point-MAE layout ({'base_model': ...}): fine-tune
from it with `python tools/train.py --config scanobjectnn_clora.yaml --ckpts <output_dir>/pretrain.pth`.
Bad input (missing data, unknown model or dataset) stops with one message before training (exit 2).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout too


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="YAML config: a path, or a file name in configs/")
    p.add_argument("--ckpts", default=None, help="Point-MAE pre-training checkpoint to continue from")
    p.add_argument("--resume", action="store_true", help="continue from <output_dir>/ckpt-last.pth")
    p.add_argument("--resume-override", action="store_true",
                   help="--resume with a changed config: apply the changed keys (refused without this flag)")
    p.add_argument("--seed", type=int, default=None, help="overrides train.seed")
    p.add_argument("--output-dir", default=None, help="overrides output_dir")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. train.epochs=10 model.mask_ratio=0.75")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--max-epochs-this-run", type=int, default=None,
                   help="stop after this many epochs (the run continues later with --resume)")
    args = p.parse_args(argv)
    args.test = False  # the shared config resolution also serves `tools/train.py --test`
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from pointclora.engine.pretrain import main as run
    from pointclora.engine.runner import run_cli

    return run_cli(run, args)

if __name__ == "__main__":
    sys.exit(main())
