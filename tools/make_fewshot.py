#!/usr/bin/env python
"""Write few-shot ModelNet40 folds in the public layout from a ModelNet40 copy.

    python tools/make_fewshot.py --modelnet data/ModelNet40 --out data/ModelNetFewshot
    python tools/make_fewshot.py --modelnet data/demo --out data/demo/ModelNetFewshot --ways 5 --shots 10 \\
        --folds 0-9 --points 2048

writes <out>/{way}way_{shot}shot/{fold}.pkl ({'train': [...], 'test': [...]} of (points (P, 6) float32,
label in 0..way-1, ModelNet40 label)) for every way x shot x fold, read by `NAME: ModelNetFewShot`.
The source is any ModelNet40 copy `pointclora.datasets.ModelNet40` reads (normal_resampled text,
the 8192-point .dat cache, or the ply_hdf5_2048 release: its first --points rows, re-ordered by
FPS; pass --points 2048 there). Every shape is stored FPS-ordered. Choices are seeded: the same --seed gives
the same folds. These are not the official folds (use those when you have them, see DATASET.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout too

from pointclora.cli import EXIT_USER_ERROR, message  # noqa: E402
from pointclora.datasets import ModelNet40  # noqa: E402
from pointclora.datasets.modelnet_fewshot import write_fewshot  # noqa: E402
from pointclora.sweep.grid import parse_indices  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modelnet", required=True, help="ModelNet40 root (folder holding modelnet40_normal_resampled/)")
    p.add_argument("--out", required=True, help="output folder, e.g. data/ModelNetFewshot")
    p.add_argument("--format", default="auto", choices=("auto", "txt", "dat", "h5"), help="ModelNet40 format")
    p.add_argument("--ways", type=int, nargs="+", default=[5, 10])
    p.add_argument("--shots", type=int, nargs="+", default=[10, 20])
    p.add_argument("--folds", default="0-9", help="fold numbers: '0-9', '0,3,5' or '0-2,7'")
    p.add_argument("--test-per-class", type=int, default=20, help="test shapes per class (public: 20)")
    p.add_argument("--points", type=int, default=8192, help="points stored per shape, FPS-ordered (public: 8192)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def run(args) -> list:
    folds = parse_indices(args.folds, "--folds")
    for name in ("ways", "shots"):
        bad = [v for v in getattr(args, name) if v < 1]
        if bad:
            raise ValueError(f"--{name}: expected positive numbers, got {bad}")
    if args.test_per_class < 1 or args.points < 1:
        raise ValueError(f"--test-per-class / --points: expected >= 1, got {args.test_per_class} / {args.points}")
    sources = {split: _source(args, split) for split in ("train", "test")}
    return write_fewshot(sources["train"], sources["test"], args.out, args.ways, args.shots, folds, args.points,
                         seed=args.seed, test_per_class=args.test_per_class, fps_order=sources["train"].format == "h5")


def _source(args, split: str):
    """ModelNet40 split whose raw_points(i) are (--points, 6) (h5 without normals: (--points, 3))."""
    try:
        return ModelNet40(args.modelnet, split=split, npoints=args.points, format=args.format, use_normals=True)
    except KeyError as err:
        if err.args != ("normal",):
            raise
        return ModelNet40(args.modelnet, split=split, npoints=args.points, format=args.format)  # h5 without normals


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        written = run(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        msg = message(err)
        if "fewer than npoints" in msg:
            msg = f"--points {args.points} is more than the shapes have: {msg.split('. [')[0]}"
        print(f"error: {msg}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    print(f"wrote {len(written)} fold file(s) under {args.out} in {time.perf_counter() - start:.1f} s "
          "(seeded folds, not the official ones)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
