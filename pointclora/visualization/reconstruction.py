"""Run a Point-MAE pre-training model on one cloud for the reconstruction view."""
from typing import Mapping, Optional

import numpy as np
import torch

from ..models import build_model, load_weights


def reconstruct(cfg: Mapping, checkpoint: Optional[str], points: np.ndarray, seed: int = 0) -> dict:
    """cfg: an experiment config whose ``model`` builds ``PointMAEPretrain``; points: (N, 3).

    -> {'centers' (G, 3), 'mask' (G,) bool (True = masked), 'visible_patches' (V, K, 3),
    'pred_patches' (M, K, 3)} in absolute coordinates; the mask is drawn with ``seed``
    (the global torch RNG is left untouched).
    """
    model = build_model(cfg["model"])
    if not hasattr(model, "reconstruct"):
        raise ValueError(f"--view reconstruction: model.NAME {cfg['model'].get('NAME')!r} builds "
                         f"{type(model).__name__}, which cannot reconstruct; use a Point-MAE pre-training config")
    if checkpoint is not None:
        load_weights(model, checkpoint, complete=True)  # KeyError naming the file when tensors are missing
    model.eval()
    xyz = torch.as_tensor(np.asarray(points), dtype=torch.float32)[None]  # (1, N, 3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rec = model.reconstruct(xyz)
    return {
        "centers": rec.center[0].numpy(),
        "mask": rec.mask[0].numpy().astype(bool),
        "visible_patches": rec.visible[0].numpy(),
        "pred_patches": rec.reconstructed[0].numpy(),
    }
