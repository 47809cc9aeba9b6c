#!/usr/bin/env python
"""Visualise point clouds, FPS/kNN patches, part segmentation, predictions and reconstructions.

  python tools/visualize.py --file cloud.ply --view cloud --out cloud.png
  python tools/visualize.py --config configs/X.yaml --split test --index 7 --view patches --out p.png
  python tools/visualize.py --predictions preds.npz --view grid --out wrong.png
Without --out an interactive Open3D window opens. Options: --help. Bad input: one line, exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout too

from pointclora.cli import run_tool  # noqa: E402
from pointclora.visualization.app import VIEWS, VisualizeOptions, visualize  # noqa: E402
from pointclora.visualization.render import BACKENDS  # noqa: E402
from pointclora.visualization.views import COLOR_BY  # noqa: E402

D = VisualizeOptions()  # the defaults


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Visualise point clouds, patches, part segmentation, predictions "
                                            "and Point-MAE reconstructions (Open3D window or PNG).")
    p.add_argument("--config", help="experiment config (YAML); shows a sample of its dataset "
                                    "(with --predictions: the run whose test split was predicted)")
    p.add_argument("--file", help="point file: .txt, .npy, .h5 (sample --index), .ply, .pcd")
    p.add_argument("--predictions", help="prediction .npz written by tools/train.py --test --save-predictions")
    p.add_argument("--split", default=D.split, help="dataset split with --config (default: test)")
    p.add_argument("--index", type=int, default=D.index, help="sample index (dataset, .h5/.npy stack, predictions)")
    p.add_argument("--view", choices=VIEWS, default=D.view)
    p.add_argument("--out", help="write a PNG here (offscreen); without it an interactive window opens")
    p.add_argument("--backend", choices=BACKENDS, default=D.backend,
                   help="PNG renderer: open3d offscreen, the numpy fallback, or auto (open3d when a GL context exists)")
    p.add_argument("--color-by", choices=COLOR_BY, default=D.color_by, help="cloud view colouring")
    p.add_argument("--num-group", type=int, help="patches: FPS centres (default: the config's model.num_group, else 64)")
    p.add_argument("--group-size", type=int, help="patches: kNN size (default: the config's model.group_size, else 32)")
    p.add_argument("--class", dest="class_name", help="grid: show samples of this class (name or id); "
                                                      "default with --predictions: the most confidently wrong")
    p.add_argument("--count", type=int, default=D.count, help="grid: number of samples (default 8)")
    p.add_argument("--checkpoint", help="reconstruction: Point-MAE pre-training checkpoint")
    p.add_argument("--mask-seed", type=int, default=D.mask_seed, help="reconstruction: seed of the random mask")
    p.add_argument("--size", type=int, default=D.size, help="panel size in pixels (default 360)")
    p.add_argument("--up", choices=("x", "y", "z"), default=D.up, help="up axis of the data (default y)")
    p.add_argument("--opts", nargs="*", default=[], help="config overrides key=value (with --config)")
    return p


def parse_args(argv=None) -> VisualizeOptions:
    return VisualizeOptions(**vars(build_parser().parse_args(argv)))


def run(argv=None) -> int:
    """Renders or shows the view; bad input raises (main turns it into one line and exit 2)."""
    return visualize(parse_args(argv))


def main(argv=None) -> int:
    return run_tool(lambda: run(argv), errors=(OSError, ValueError, KeyError, IndexError, ImportError,
                                               RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
