"""Deterministic colour maps: categorical palette, height ramp, normals, highlights.

Every colour is RGB in [0, 1]; the same label always gets the same colour, in
every view and on every machine (no random state, no matplotlib style lookups).
"""
import colorsys

import numpy as np

BACKGROUND = (1.0, 1.0, 1.0)
CORRECT = (0.78, 0.78, 0.78)  # light grey: points predicted right
WRONG = (0.90, 0.05, 0.05)  # red: points predicted wrong
HIDDEN = (0.80, 0.80, 0.80)  # grey: masked / context points

# Tableau 10 then its light variants: distinct for the first labels, which are the common case.
_BASE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]


def _hex(code: str) -> tuple:
    return tuple(int(code[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


def palette(n: int) -> np.ndarray:
    """n distinct colours -> (n, 3) float; beyond 20 the hues follow the golden ratio."""
    if n < 0:
        raise ValueError(f"n: expected a non-negative number of colours, got {n}")
    colours = [_hex(c) for c in _BASE[:n]]
    for i in range(len(colours), n):
        hue = (i * 0.618033988749895) % 1.0
        colours.append(colorsys.hsv_to_rgb(hue, 0.65 + 0.3 * (i % 2), 0.85 - 0.25 * (i % 3 == 0)))
    return np.asarray(colours, dtype=np.float64).reshape(n, 3)


def label_colors(labels: np.ndarray, num_labels: int = None) -> np.ndarray:
    """labels: (N,) int >= 0 -> (N, 3) colours from ``palette``."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected a 1-D integer array, got {labels.dtype} {labels.shape}")
    if len(labels) and labels.min() < 0:
        raise ValueError(f"labels: expected values >= 0, got min {labels.min()}")
    n = int(labels.max()) + 1 if len(labels) else 0
    return palette(max(n, num_labels or 0))[labels]


def _viridis(t: np.ndarray) -> np.ndarray:
    """t: (N,) in [0, 1] -> (N, 3): piecewise-linear viridis through 6 of its anchors."""
    anchors = np.array([
        [0.267, 0.005, 0.329], [0.254, 0.265, 0.530], [0.164, 0.471, 0.558],
        [0.135, 0.659, 0.518], [0.478, 0.821, 0.318], [0.993, 0.906, 0.144],
    ])
    x = np.linspace(0, 1, len(anchors))
    return np.stack([np.interp(t, x, anchors[:, c]) for c in range(3)], axis=1)


def height_colors(points: np.ndarray, up: str = "y") -> np.ndarray:
    """points: (N, 3) -> (N, 3) viridis colours by the coordinate along ``up`` (low = purple)."""
    axis = {"x": 0, "y": 1, "z": 2}.get(up)
    if axis is None:
        raise ValueError(f"up: expected 'x', 'y' or 'z', got {up!r}")
    h = np.asarray(points, dtype=np.float64)[:, axis]
    span = h.max() - h.min() if len(h) else 0.0
    t = (h - h.min()) / span if span > 0 else np.full_like(h, 0.5)
    return _viridis(t)


def normal_colors(normals: np.ndarray) -> np.ndarray:
    """normals: (N, 3) -> (N, 3) colours (n + 1) / 2 of the unit normals (the usual normal map)."""
    n = np.asarray(normals, dtype=np.float64)
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return (n + 1.0) / 2.0
