"""Procedural shapes for the demo dataset: primitives with per-part labels.

A shape is a list of (primitive, part) pairs; `sample_shape` draws points on
their surfaces in proportion to area, with outward normals and the part id of
each point. y is up (as in ModelNet40 normal_resampled and ShapeNetPart).
Every builder randomises proportions and optional parts so that classes
overlap (chair / sofa / table, bin / box, display / shelf) and are learnable
but not trivially separable.
"""
from typing import Callable, Dict, List, Tuple

import numpy as np

Rng = np.random.Generator
AXES = {"x": 0, "y": 1, "z": 2}


class Box:
    """Axis-aligned cuboid surface; `open_top` drops the +y face (bins, drawers)."""

    def __init__(self, center, size, open_top: bool = False):
        self.c, self.s, self.open_top = np.asarray(center, float), np.asarray(size, float), open_top

    def faces(self):
        sx, sy, sz = self.s
        areas = np.array([sy * sz, sy * sz, sx * sz, 0.0 if self.open_top else sx * sz, sx * sy, sx * sy])
        return areas  # order: -x, +x, -y, +y, -z, +z

    def area(self) -> float:
        return float(self.faces().sum())

    def sample(self, n: int, rng: Rng) -> Tuple[np.ndarray, np.ndarray]:
        areas = self.faces()
        face = rng.choice(6, size=n, p=areas / areas.sum())  # (n,)
        axis, sign = face // 2, np.where(face % 2 == 0, -1.0, 1.0)
        local = rng.uniform(-0.5, 0.5, size=(n, 3))  # (n, 3)
        local[np.arange(n), axis] = 0.5 * sign
        normals = np.zeros((n, 3))
        normals[np.arange(n), axis] = sign
        return self.c + local * self.s, normals


class Cylinder:
    """Cylinder or frustum along `axis` (radius r0 at -h/2, r1 at +h/2), optional caps."""

    def __init__(self, center, r0, r1, height, axis="y", caps=(True, True)):
        self.c, self.r0, self.r1, self.h = np.asarray(center, float), r0, r1, height
        self.axis, self.caps = AXES[axis], caps

    def parts(self):
        slant = np.hypot(self.h, self.r1 - self.r0)
        return np.array([np.pi * (self.r0 + self.r1) * slant, np.pi * self.r0**2 * self.caps[0], np.pi * self.r1**2 * self.caps[1]])

    def area(self) -> float:
        return float(self.parts().sum())

    def sample(self, n: int, rng: Rng) -> Tuple[np.ndarray, np.ndarray]:
        areas = self.parts()
        which = rng.choice(3, size=n, p=areas / areas.sum())  # 0 side, 1 bottom cap, 2 top cap
        theta = rng.uniform(0, 2 * np.pi, n)
        # side: t with density ~ radius(t) (inverse CDF of a linear density)
        a, b = self.r0, self.r1 - self.r0
        u = rng.random(n)
        t = np.where(abs(b) < 1e-9, u, (np.sqrt(a * a + 2 * b * u * (a + b / 2)) - a) / np.where(abs(b) < 1e-9, 1, b))
        t = np.where(which == 1, 0.0, np.where(which == 2, 1.0, t))
        radius = self.r0 + (self.r1 - self.r0) * t
        radius = np.where(which == 0, radius, radius * np.sqrt(rng.random(n)))  # caps: uniform disk
        along, cos, sin = (t - 0.5) * self.h, np.cos(theta), np.sin(theta)
        slope = (self.r0 - self.r1) / self.h
        side_n = np.stack([cos, np.full(n, slope), sin], 1) / np.sqrt(1 + slope**2)
        cap_n = np.stack([np.zeros(n), np.where(which == 1, -1.0, 1.0), np.zeros(n)], 1)
        local = np.stack([radius * cos, along, radius * sin], 1)  # (n, 3) with the axis in column 1
        normals = np.where((which == 0)[:, None], side_n, cap_n)
        return self.c + self._orient(local), self._orient(normals)

    def _orient(self, v: np.ndarray) -> np.ndarray:
        order = {0: [1, 0, 2], 1: [0, 1, 2], 2: [0, 2, 1]}[self.axis]  # move column 1 to the axis
        return v[:, order]


class Ellipsoid:
    def __init__(self, center, radii):
        self.c, self.r = np.asarray(center, float), np.asarray(radii, float)

    def area(self) -> float:
        a, b, c = self.r  # Knud Thomsen's approximation
        p = 1.6075
        return float(4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p))

    def sample(self, n: int, rng: Rng) -> Tuple[np.ndarray, np.ndarray]:
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        normals = d / self.r
        return self.c + d * self.r, normals / np.linalg.norm(normals, axis=1, keepdims=True)


class HalfTorus:
    """Half torus in the x-y plane on the +x side of `center` (a mug handle)."""

    def __init__(self, center, major, minor):
        self.c, self.R, self.r = np.asarray(center, float), major, minor

    def area(self) -> float:
        return float(2 * np.pi**2 * self.R * self.r)

    def sample(self, n: int, rng: Rng) -> Tuple[np.ndarray, np.ndarray]:
        u, v = rng.uniform(-np.pi / 2, np.pi / 2, n), rng.uniform(0, 2 * np.pi, n)
        ring = np.stack([np.cos(u), np.sin(u), np.zeros(n)], 1)
        normals = ring * np.cos(v)[:, None] + np.array([0.0, 0.0, 1.0]) * np.sin(v)[:, None]
        return self.c + self.R * ring + self.r * normals, normals


Shape = List[Tuple[object, int]]  # (primitive, local part id)


def sample_shape(shape: Shape, n: int, rng: Rng) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> points (n, 3), normals (n, 3), part (n,) int64, area-weighted over primitives."""
    areas = np.array([prim.area() for prim, _ in shape])
    counts = rng.multinomial(n, areas / areas.sum())
    pts, nrm, part = [], [], []
    for (prim, label), k in zip(shape, counts):
        if k:
            p, q = prim.sample(int(k), rng)
            pts.append(p), nrm.append(q), part.append(np.full(int(k), label, dtype=np.int64))
    return np.concatenate(pts), np.concatenate(nrm), np.concatenate(part)


def _legs(rng: Rng, half_x, half_z, top_y, thick, inset=0.9):
    """Four legs (boxes or round) from y=0 to top_y at the corners."""
    round_legs = rng.random() < 0.4
    out = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            c = (sx * half_x * inset, top_y / 2, sz * half_z * inset)
            out.append(Cylinder(c, thick / 2, thick / 2, top_y, caps=(False, False)) if round_legs else Box(c, (thick, top_y, thick)))
    return out


def chair(rng: Rng) -> Shape:  # parts: 0 back, 1 seat, 2 leg, 3 arm (ShapeNetPart Chair 12..15)
    w, d, seat_y = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.55)
    t, back_h = rng.uniform(0.04, 0.08), rng.uniform(0.4, 0.75)
    shape = [(Box((0, seat_y, 0), (w, t, d)), 1), (Box((0, seat_y + back_h / 2, -d / 2), (w, back_h, t)), 0)]
    shape += [(leg, 2) for leg in _legs(rng, w / 2, d / 2, seat_y - t / 2, rng.uniform(0.03, 0.06))]
    if rng.random() < 0.4:
        arm_h = rng.uniform(0.15, 0.25)
        shape += [(Box((s * w / 2, seat_y + arm_h, 0), (t, 0.04, d)), 3) for s in (-1, 1)]
    return shape


def sofa(rng: Rng) -> Shape:  # wide, low seat, thick back and arms
    w, d, seat_y = rng.uniform(1.0, 1.6), rng.uniform(0.5, 0.7), rng.uniform(0.3, 0.45)
    back_h, arm = rng.uniform(0.3, 0.5), rng.uniform(0.1, 0.2)
    shape = [(Box((0, seat_y / 2, 0), (w, seat_y, d)), 1), (Box((0, seat_y + back_h / 2, -d / 2 + 0.08), (w, back_h, 0.16)), 0)]
    if rng.random() < 0.8:
        shape += [(Box((s * (w / 2 - arm / 2), seat_y + 0.1, 0), (arm, 0.2 + seat_y * 0.5, d)), 3) for s in (-1, 1)]
    return shape


def table(rng: Rng) -> Shape:  # parts: 0 top, 1 leg, 2 drawer/support (ShapeNetPart Table 47..49)
    w, d, h, t = rng.uniform(0.8, 1.4), rng.uniform(0.5, 0.9), rng.uniform(0.55, 0.8), rng.uniform(0.03, 0.07)
    round_top = rng.random() < 0.3
    top = Cylinder((0, h, 0), w / 2, w / 2, t) if round_top else Box((0, h, 0), (w, t, d))
    shape = [(top, 0)]
    if round_top or rng.random() < 0.2:  # pedestal table
        shape += [(Cylinder((0, h / 2, 0), 0.05, 0.05, h, caps=(False, False)), 1), (Cylinder((0, 0.02, 0), 0.25, 0.25, 0.04), 1)]
    else:
        shape += [(leg, 1) for leg in _legs(rng, w / 2, d / 2, h - t / 2, rng.uniform(0.04, 0.07))]
        if rng.random() < 0.4:
            shape.append((Box((w / 4, h - 0.1, 0), (w / 3, 0.12, d * 0.8)), 2))
    return shape


def lamp(rng: Rng) -> Shape:  # parts: 0 base, 1 shade, 2 canopy, 3 tube (ShapeNetPart Lamp 24..27)
    h, base_r, shade_h = rng.uniform(0.8, 1.4), rng.uniform(0.12, 0.25), rng.uniform(0.2, 0.35)
    r_top, r_bot = rng.uniform(0.08, 0.15), rng.uniform(0.18, 0.3)
    shape = [
        (Cylinder((0, 0.03, 0), base_r, base_r, 0.06), 0),
        (Cylinder((0, h / 2, 0), 0.02, 0.02, h, caps=(False, False)), 3),
        (Cylinder((0, h + 0.03, 0), 0.04, 0.04, 0.06), 2),
        (Cylinder((0, h - shade_h * 0.3, 0), r_bot, r_top, shade_h, caps=(False, False)), 1),
    ]
    return shape


def mug(rng: Rng) -> Shape:  # parts: 0 handle, 1 body (ShapeNetPart Mug 36, 37)
    r, h = rng.uniform(0.3, 0.45), rng.uniform(0.6, 1.0)
    body = Cylinder((0, h / 2, 0), r * rng.uniform(0.85, 1.0), r, h, caps=(True, False))
    handle = HalfTorus((r, h * 0.5, 0), h * rng.uniform(0.2, 0.3), rng.uniform(0.03, 0.05))
    return [(handle, 0), (body, 1)]


def airplane(rng: Rng) -> Shape:  # parts: 0 body, 1 wing, 2 tail, 3 engine (ShapeNetPart Airplane 0..3)
    length, r, span = rng.uniform(1.6, 2.2), rng.uniform(0.08, 0.14), rng.uniform(1.4, 2.2)
    chord, wing_x = rng.uniform(0.25, 0.45), rng.uniform(-0.1, 0.2)
    shape = [
        (Cylinder((0, 0, 0), r, r, length, axis="x", caps=(False, False)), 0),
        (Ellipsoid((length / 2, 0, 0), (0.3, r, r)), 0),
        (Box((wing_x, -r / 2, 0), (chord, 0.03, span)), 1),
        (Box((-length / 2 + 0.12, r + 0.15, 0), (0.22, 0.3, 0.03)), 2),
        (Box((-length / 2 + 0.1, 0, 0), (0.18, 0.02, span * 0.35)), 2),
    ]
    n_eng = 2 if rng.random() < 0.7 else 4
    for z in np.linspace(-span * 0.35, span * 0.35, n_eng):
        shape.append((Cylinder((wing_x + 0.05, -r - 0.06, z), 0.06, 0.06, 0.3, axis="x"), 3))
    return shape


def display(rng: Rng) -> Shape:  # thin screen on a neck and foot
    w, h, neck = rng.uniform(0.7, 1.2), rng.uniform(0.45, 0.75), rng.uniform(0.1, 0.25)
    return [
        (Box((0, neck + h / 2, 0), (w, h, rng.uniform(0.03, 0.08))), 0),
        (Box((0, neck / 2, -0.02), (0.08, neck, 0.04)), 1),
        (Box((0, 0.01, 0), (rng.uniform(0.25, 0.4), 0.02, rng.uniform(0.15, 0.25))), 1),
    ]


def shelf(rng: Rng) -> Shape:  # two sides, k boards, optional back
    w, h, d, k = rng.uniform(0.6, 1.0), rng.uniform(0.8, 1.8), rng.uniform(0.25, 0.4), int(rng.integers(3, 6))
    shape = [(Box((s * w / 2, h / 2, 0), (0.03, h, d)), 0) for s in (-1, 1)]
    shape += [(Box((0, y, 0), (w, 0.03, d)), 1) for y in np.linspace(0.02, h - 0.02, k)]
    if rng.random() < 0.6:
        shape.append((Box((0, h / 2, -d / 2), (w, h, 0.01)), 2))
    return shape


def bin_(rng: Rng) -> Shape:  # open round or square container
    h, r = rng.uniform(0.5, 0.9), rng.uniform(0.2, 0.35)
    if rng.random() < 0.5:
        return [(Cylinder((0, h / 2, 0), r * rng.uniform(0.75, 1.0), r, h, caps=(True, False)), 0)]
    return [(Box((0, h / 2, 0), (2 * r, h, 2 * r * rng.uniform(0.7, 1.0)), open_top=True), 0)]


def box(rng: Rng) -> Shape:
    return [(Box((0, 0, 0), rng.uniform(0.3, 1.0, size=3)), 0)]


BUILDERS: Dict[str, Callable[[Rng], Shape]] = {
    "airplane": airplane, "bin": bin_, "box": box, "chair": chair, "display": display, "lamp": lamp,
    "mug": mug, "shelf": shelf, "sofa": sofa, "table": table,
}  # fmt: skip


def occlude(points: np.ndarray, rng: Rng, max_fraction: float) -> np.ndarray:
    """Boolean keep-mask (N,) removing up to max_fraction of the points beyond a
    random cutting plane: a view-dependent hole, like a scan's self-occlusion."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    depth = points @ direction
    cut = np.quantile(depth, 1.0 - rng.uniform(0.0, max_fraction))
    return depth <= cut


def make_shape(kind: str, n: int, rng: Rng, noise: float = 0.01, occlusion: float = 0.2):
    """Sample one shape -> points (n, 3) in the unit sphere, normals (n, 3), part (n,)."""
    pts, nrm, part = sample_shape(BUILDERS[kind](rng), int(n * 1.5), rng)
    keep = occlude(pts, rng, occlusion) if occlusion > 0 else np.ones(len(pts), bool)
    idx = rng.choice(np.flatnonzero(keep), size=n, replace=keep.sum() < n)
    pts, nrm, part = pts[idx], nrm[idx], part[idx]
    pts = pts - (pts.max(0) + pts.min(0)) / 2
    pts = pts / np.linalg.norm(pts, axis=1).max()
    pts = pts + rng.normal(scale=noise, size=pts.shape)
    return pts.astype(np.float32), nrm.astype(np.float32), part
