#!/usr/bin/env python
"""Write the procedural demo dataset in the real on-disk formats.

    python tools/make_demo_data.py --out data/demo --seed 0

writes data/demo/ScanObjectNN/h5_files/... (OBJ_BG, OBJ_ONLY, PB_T50_RS),
data/demo/modelnet40_normal_resampled/ and
data/demo/shapenetcore_partanno_segmentation_benchmark_v0_normal/ (see DATASET.md).
"""
import argparse
import time

from pointclora.datasets.demo import DATASET_IDS, make_demo_data


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/demo", help="output root (default: data/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-class", type=int, default=40)
    p.add_argument("--test-per-class", type=int, default=20)
    p.add_argument("--val-per-class", type=int, default=8, help="ShapeNetPart validation shapes per category")
    p.add_argument("--npoints", type=int, default=2048, help="points per shape")
    p.add_argument("--datasets", nargs="+", default=list(DATASET_IDS), choices=list(DATASET_IDS))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    root = make_demo_data(
        args.out, seed=args.seed, train_per_class=args.train_per_class, test_per_class=args.test_per_class,
        val_per_class=args.val_per_class, npoints=args.npoints, datasets=args.datasets,
    )  # fmt: skip
    print(f"wrote {', '.join(args.datasets)} demo data under {root} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
