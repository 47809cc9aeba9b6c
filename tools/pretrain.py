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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout too

from pointclora.engine.options import PRETRAIN, RunOptions, parse_options  # noqa: E402
from pointclora.engine.runner import main as run, run_cli  # noqa: E402


def parse_args(argv=None) -> RunOptions:
    return parse_options(PRETRAIN, __doc__.split("\n\n")[0], argv)


def main(argv=None) -> int:
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
