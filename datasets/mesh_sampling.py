"""OFF meshes -> point clouds with normals, and ModelNet meshes -> the
`modelnet40_normal_resampled` text layout.

Area-weighted triangle sampling (uniform on the surface) with the face normal
of each sampled triangle, as the PointNet++ resampled release was produced.
Reads both OFF header styles of the ModelNet release: 'OFF\\nV F E' and the
broken 'OFFV F E' on one line.
"""
from pathlib import Path
from typing import Dict, Iterable, Tuple

import numpy as np

from .common import PathLike, malformed, require_file
from .modelnet40 import CLASSES
from ..io import atomic_write_text
from .pointcloud_io import format_rows

NAME = "ModelNet40"


def _content_lines(text: str):
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            yield line


def read_off(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Read an OFF mesh -> vertices (V, 3) float64, triangles (T, 3) int64.

    Polygons with more than 3 vertices are fan-triangulated; trailing face
    colours are ignored. Raises ValueError naming the file on a bad header,
    short file, non-numeric value or out-of-range vertex index.
    """
    path = require_file(Path(path), "OFF mesh", NAME)
    lines = list(_content_lines(path.read_text(errors="replace")))
    if not lines or not lines[0].startswith("OFF"):
        raise malformed(path, "not an OFF file (first line must start with 'OFF')", NAME)
    rest = lines[0][3:].split()
    body = lines[1:] if rest else lines[2:]
    counts = rest if rest else (lines[1].split() if len(lines) > 1 else [])
    try:
        n_vert, n_face = int(counts[0]), int(counts[1])
        vertices = np.array([[float(t) for t in line.split()[:3]] for line in body[:n_vert]], dtype=np.float64)
        faces = [[int(t) for t in line.split()[1 : 1 + int(line.split()[0])]] for line in body[n_vert : n_vert + n_face]]
    except (ValueError, IndexError) as err:
        raise malformed(path, f"bad OFF header or row ({err})", NAME) from None
    if vertices.shape != (n_vert, 3) or len(faces) != n_face:
        raise malformed(path, f"header announces {n_vert} vertices and {n_face} faces, file is shorter", NAME)
    triangles = [[f[0], f[i], f[i + 1]] for f in faces for i in range(1, len(f) - 1)]
    triangles = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    if triangles.size and (triangles.min() < 0 or triangles.max() >= n_vert):
        raise malformed(path, f"face vertex index out of range [0, {n_vert})", NAME)
    if not np.isfinite(vertices).all():
        raise malformed(path, "non-finite vertex coordinate", NAME)
    return vertices, triangles


def sample_mesh(
    vertices: np.ndarray, triangles: np.ndarray, npoints: int, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """vertices (V, 3), triangles (T, 3) -> points (npoints, 3), normals (npoints, 3) float32.

    Triangles are drawn with probability proportional to their area (degenerate
    ones never), points uniformly inside them (sqrt trick of Osada et al. 2002).
    """
    a, b, c = (vertices[triangles[:, k]] for k in range(3))  # (T, 3) each
    cross = np.cross(b - a, c - a)  # (T, 3)
    area = 0.5 * np.linalg.norm(cross, axis=1)  # (T,)
    if not np.isfinite(area).all() or area.sum() <= 0:
        raise ValueError("sample_mesh: the mesh has zero total surface area")
    face = rng.choice(len(area), size=npoints, p=area / area.sum())  # (npoints,)
    r1, r2 = np.sqrt(rng.random(npoints))[:, None], rng.random(npoints)[:, None]
    points = (1 - r1) * a[face] + r1 * (1 - r2) * b[face] + r1 * r2 * c[face]  # (npoints, 3)
    normals = cross[face] / (2 * area[face])[:, None]  # unit face normals
    return points.astype(np.float32), normals.astype(np.float32)


def off_to_points(path: PathLike, npoints: int, seed: int = 0) -> np.ndarray:
    """OFF file -> (npoints, 6) float32 'x y z nx ny nz' surface samples."""
    vertices, triangles = read_off(path)
    try:
        points, normals = sample_mesh(vertices, triangles, npoints, np.random.default_rng(seed))
    except ValueError as err:
        raise malformed(path, str(err), NAME) from None
    return np.concatenate([points, normals], axis=1)


def meshes_to_modelnet(
    meshes: Dict[str, Iterable[Tuple[str, PathLike]]], out: PathLike, npoints: int = 10000, seed: int = 0,
    classes: Iterable[str] = None,
) -> Path:  # fmt: skip
    """Write OFF meshes in the modelnet40_normal_resampled layout.

    meshes: {'train'|'test': [(class name, .off path), ...]}; shape ids are the
    .off stems (e.g. 'desk_0001'). classes: the class list for
    modelnet40_shape_names.txt (default: the 40 ModelNet40 names). Returns `out`.
    """
    out = Path(out)
    names = list(classes) if classes is not None else list(CLASSES)
    for split, items in meshes.items():
        ids = []
        for i, (cls, path) in enumerate(items):
            if cls not in names:
                raise ValueError(f"meshes[{split!r}]: class '{cls}' of {path} is not in the class list")
            shape_id = Path(path).stem
            data = off_to_points(path, npoints, seed + i)
            atomic_write_text(out / cls / f"{shape_id}.txt", format_rows(data, "%.6f", ","))
            ids.append(shape_id)
        atomic_write_text(out / f"modelnet40_{split}.txt", "".join(f"{s}\n" for s in ids))
    atomic_write_text(out / "modelnet40_shape_names.txt", "".join(f"{n}\n" for n in names))
    return out
