#!/usr/bin/env python
"""Visualise point clouds, FPS/kNN patches, part segmentation, predictions and reconstructions.

  python tools/visualize.py --file cloud.ply --view cloud --out cloud.png
  python tools/visualize.py --config configs/X.yaml --split test --index 7 --view patches --out p.png
  python tools/visualize.py --predictions preds.npz --view grid --out wrong.png
Without --out an interactive Open3D window opens. Options: --help.
"""
import sys

from pointclora.visualization.app import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError, KeyError, IndexError, ImportError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
