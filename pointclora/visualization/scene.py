"""What a view produces and a renderer draws: layers of coloured points in panels, plus a legend.

A view (``views.py``) builds a ``Scene``; ``render.py`` turns it into a PNG (Open3D
offscreen or the numpy fallback) or an interactive window. Keeping the two apart
lets the tests check a view's content without any renderer.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np


@dataclass
class Layer:
    """points: (N, 3) float, colors: (N, 3) in [0, 1].

    kind 'points' draws square splats of ``size`` pixels; kind 'spheres' draws a
    shaded ball of world radius ``radius`` at every point (used for patch centres).
    """

    points: np.ndarray
    colors: np.ndarray
    size: float = 3.0
    kind: str = "points"
    radius: float = 0.0

    def __post_init__(self):
        self.points = np.asarray(self.points, dtype=np.float64)
        self.colors = np.asarray(self.colors, dtype=np.float64)
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"Layer.points: expected (N, 3), got {self.points.shape}")
        if self.colors.shape == (3,):
            self.colors = np.tile(self.colors, (len(self.points), 1))
        if self.colors.shape != self.points.shape:
            raise ValueError(f"Layer.colors: expected {self.points.shape} to match points, got {self.colors.shape}")
        if self.kind not in ("points", "spheres"):
            raise ValueError(f"Layer.kind: expected 'points' or 'spheres', got {self.kind!r}")
        if self.kind == "spheres" and self.radius <= 0:
            raise ValueError(f"Layer.radius: expected > 0 for spheres, got {self.radius}")


@dataclass
class Panel:
    """One rendered image: its layers share the panel's fixed camera."""

    layers: List[Layer]
    title: str = ""

    def all_points(self) -> np.ndarray:
        """-> (sum N, 3) every layer's points (what the camera is fitted to)."""
        return np.concatenate([layer.points for layer in self.layers], axis=0)


@dataclass
class Scene:
    """Panels laid out in a grid of ``ncols`` columns; legend entries are (name, rgb)."""

    panels: List[Panel]
    title: str = ""
    legend: List[Tuple[str, Tuple[float, float, float]]] = field(default_factory=list)
    ncols: Optional[int] = None
    up: str = "y"
    camera_from: Optional[int] = None  # fit every panel's camera to this panel (same scale), else each its own

    def __post_init__(self):
        if not self.panels:
            raise ValueError("Scene.panels: expected at least one panel, got none")
        for i, panel in enumerate(self.panels):
            if not panel.layers or sum(len(layer.points) for layer in panel.layers) == 0:
                raise ValueError(f"Scene.panels[{i}] ({panel.title!r}): expected at least one point, got none")
        if self.ncols is None:
            self.ncols = len(self.panels) if len(self.panels) <= 4 else int(np.ceil(np.sqrt(len(self.panels))))
