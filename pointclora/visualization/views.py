"""The five views: plain cloud, FPS/kNN patches, part segmentation, sample grid, MAE reconstruction.

Each view takes numpy arrays and returns a ``Scene`` (``scene.py``); rendering is
``render.py``'s job. Points are (N, 3) float, labels int.
"""
from typing import List, Optional, Sequence

import numpy as np
import torch

import cuda_ext

from ..models.grouping import Group
from .colors import CORRECT, HIDDEN, WRONG, height_colors, label_colors, normal_colors, palette
from .scene import Layer, Panel, Scene

COLOR_BY = ("height", "normals", "rgb")


def _check_points(points, name: str = "points") -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"{name}: expected a non-empty (N, 3) array, got shape {points.shape}")
    return points


def _check_labels(labels, n: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: expected ({n},) integer labels (one per point), got {labels.dtype} {labels.shape}")
    return labels.astype(np.int64)


def _point_size(n: int) -> float:
    """Splat size in pixels: dense clouds get small splats so the shape stays readable."""
    return 2.0 if n > 4000 else 3.0 if n > 1200 else 4.0


def label_name(names: Optional[Sequence[str]], i: int, kind: str) -> str:
    return str(names[i]) if names is not None and 0 <= i < len(names) else f"{kind} {i}"


def estimate_normals(points: np.ndarray, k: int = 16) -> np.ndarray:
    """points: (N, 3) -> (N, 3) unit normals: smallest principal axis of each kNN neighbourhood
    (``cuda_ext.knn``), flipped to point away from the centroid."""
    points = _check_points(points)
    xyz = torch.as_tensor(points, dtype=torch.float32)[None]  # (1, N, 3)
    idx = cuda_ext.knn(xyz, xyz, min(k, len(points)))[1][0].numpy()  # (N, k)
    nbrs = points[idx] - points[idx].mean(axis=1, keepdims=True)  # (N, k, 3)
    normals = np.linalg.eigh(np.einsum("nki,nkj->nij", nbrs, nbrs))[1][:, :, 0]  # (N, 3) smallest eigenvector
    flip = np.sum(normals * (points - points.mean(0)), axis=1) < 0
    normals[flip] *= -1
    return normals


# ----------------------------------------------------------------------------- cloud
def cloud_view(points, normals=None, colors=None, color_by: str = "height", title: str = "", up: str = "y") -> Scene:
    """One panel coloured by height (viridis along ``up``), normals ((n + 1) / 2, estimated
    when not given) or the file's own rgb ``colors``."""
    points = _check_points(points)
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by: expected one of {COLOR_BY}, got {color_by!r}")
    if color_by == "normals":
        given = normals is not None
        normals = _check_points(normals, "normals") if given else estimate_normals(points)
        rgb, how = normal_colors(normals), "normals" if given else "normals (estimated, k=16)"
    elif color_by == "rgb":
        if colors is None:
            raise ValueError("color_by='rgb': the input has no colours; use 'height' or 'normals'")
        rgb, how = np.asarray(colors, dtype=np.float64), "rgb"
    else:
        rgb, how = height_colors(points, up), f"height ({up})"
    panel = Panel([Layer(points, rgb, _point_size(len(points)))], f"{len(points)} points, colour: {how}")
    return Scene([panel], title=title, up=up)


# ----------------------------------------------------------------------------- patches
def group_patches(points: np.ndarray, num_group: int, group_size: int):
    """The backbone's grouping (``pointclora.models.grouping.Group``: FPS centres, kNN patches).

    -> centers (G, 3), patch_idx (G, K) int64 into points, owner (N,) int64: the patch whose
    centre is nearest among those containing the point, -1 for points in no patch.
    """
    points = _check_points(points)
    group = Group(num_group, group_size)
    with torch.no_grad():
        _, center, _, patch_idx = group.forward_with_indices(torch.as_tensor(points, dtype=torch.float32)[None])
    center, patch_idx = center[0].double().numpy(), patch_idx[0].numpy().astype(np.int64)  # (G, 3), (G, K)
    dist = np.linalg.norm(points[patch_idx] - center[:, None], axis=2)  # (G, K)
    flat_pt, flat_patch = patch_idx.reshape(-1), np.repeat(np.arange(num_group), group_size)
    order = np.lexsort((dist.reshape(-1), flat_pt))  # by point, then nearest centre first
    first = np.unique(flat_pt[order], return_index=True)[1]
    owner = np.full(len(points), -1, dtype=np.int64)
    owner[flat_pt[order][first]] = flat_patch[order][first]
    return center, patch_idx, owner


def _centre_radius(points: np.ndarray, centers: np.ndarray) -> float:
    """Ball radius: a quarter of the median spacing of the centres (balls rarely touch), at most 1.8 %
    of the cloud's diagonal."""
    diag = float(np.linalg.norm(points.max(0) - points.min(0)))
    if len(centers) < 2:
        return 0.018 * diag
    gaps = np.linalg.norm(centers[:, None] - centers[None], axis=2) + np.diag(np.full(len(centers), np.inf))  # (G, G)
    return min(float(np.median(gaps.min(1))) / 4, 0.018 * diag)


def patches_view(points, num_group: int = 64, group_size: int = 32, title: str = "", up: str = "y",
                 explode: float = 1.6) -> Scene:
    """Panels: input with FPS centres (balls); points coloured by patch (grey: in no patch);
    the patches pulled apart (centre * ``explode``) to show each kNN neighbourhood whole."""
    points = _check_points(points)
    center, patch_idx, owner = group_patches(points, num_group, group_size)
    colours, radius, size = palette(num_group), _centre_radius(points, center), _point_size(len(points))
    balls = Layer(center, colours, kind="spheres", radius=radius)
    covered = owner >= 0
    by_patch = [Layer(points[covered], colours[owner[covered]], size), balls]
    if (~covered).any():
        by_patch.insert(0, Layer(points[~covered], HIDDEN, size))
    exploded = (points[patch_idx] - center[:, None]) + explode * center[:, None]  # (G, K, 3)
    panels = [
        Panel([Layer(points, height_colors(points, up), size), balls], f"input + {num_group} FPS centres"),
        Panel(by_patch, f"{covered.sum()}/{len(points)} points in a patch"),
        Panel([Layer(exploded.reshape(-1, 3), np.repeat(colours, group_size, axis=0), size)],
              f"{num_group} patches x {group_size} points (kNN)"),
    ]
    legend = [("ball: FPS patch centre", tuple(colours[0])), ("in no patch", HIDDEN)]
    return Scene(panels, title=title, legend=legend, up=up)


# ----------------------------------------------------------------------------- part segmentation
def part_metrics(seg: np.ndarray, pred: np.ndarray) -> tuple:
    """-> (point accuracy, shape mIoU over the parts in seg or pred; a part absent from both counts as 1)."""
    parts = np.union1d(seg, pred)
    ious = [np.sum((seg == p) & (pred == p)) / np.sum((seg == p) | (pred == p)) for p in parts]
    return float(np.mean(seg == pred)), float(np.mean(ious)) if ious else 1.0


def partseg_view(points, seg, pred_seg=None, part_names: Optional[Sequence[str]] = None,
                 title: str = "", up: str = "y") -> Scene:
    """Ground truth | prediction | errors (wrong points red, right ones grey, wrong drawn larger)."""
    points = _check_points(points)
    seg = _check_labels(seg, len(points), "seg")
    size = _point_size(len(points))
    num = int(seg.max()) + 1
    panels = [Panel([Layer(points, label_colors(seg, num), size)], "ground truth")]
    present = np.unique(seg)
    if pred_seg is not None:
        pred_seg = _check_labels(pred_seg, len(points), "pred_seg")
        num = max(num, int(pred_seg.max()) + 1)
        panels[0].layers[0].colors = label_colors(seg, num)
        acc, miou = part_metrics(seg, pred_seg)
        wrong = seg != pred_seg
        error_layers = [Layer(points[~wrong], CORRECT, size)] + ([Layer(points[wrong], WRONG, size + 1)] if wrong.any() else [])
        panels += [Panel([Layer(points, label_colors(pred_seg, num), size)], f"prediction (acc {acc:.1%}, mIoU {miou:.1%})"),
                   Panel(error_layers, f"{wrong.sum()} wrong points")]
        present = np.union1d(present, pred_seg)
    colours = palette(num)
    legend = [(label_name(part_names, int(p), "part"), tuple(colours[p])) for p in present]
    if pred_seg is not None:
        legend += [("wrong", WRONG), ("right", CORRECT)]
    return Scene(panels, title=title, legend=legend, up=up)


# ----------------------------------------------------------------------------- grids
def grid_view(clouds: List[np.ndarray], titles: List[str], labels: Sequence[int],
              class_names: Optional[Sequence[str]] = None, title: str = "", up: str = "y") -> Scene:
    """One tile per cloud, coloured by its (true) class ``labels``; legend of those classes."""
    if not clouds:
        raise ValueError("clouds: expected at least one sample for the grid, got none")
    if len(titles) != len(clouds) or len(labels) != len(clouds):
        raise ValueError(f"titles, labels: expected {len(clouds)} each, got {len(titles)} and {len(labels)}")
    num = max(int(max(labels)) + 1, len(class_names or []))
    colours = palette(num)
    panels = []
    for cloud, tile_title, label in zip(clouds, titles, labels):
        cloud = _check_points(cloud, "clouds[i]")
        panels.append(Panel([Layer(cloud, colours[int(label)], _point_size(len(cloud)))], tile_title))
    legend = [(label_name(class_names, int(c), "class"), tuple(colours[c])) for c in sorted(set(int(l) for l in labels))]
    return Scene(panels, title=title, legend=legend, up=up)


def select_class(labels: np.ndarray, class_id: int, count: int) -> np.ndarray:
    """Indices of the first ``count`` samples whose label is ``class_id``."""
    hits = np.flatnonzero(np.asarray(labels) == class_id)
    if len(hits) == 0:
        raise ValueError(f"class: no sample has label {class_id}")
    return hits[:count]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def select_confidently_wrong(label: np.ndarray, pred: np.ndarray, probs: Optional[np.ndarray], count: int):
    """-> (indices of the ``count`` wrong samples with the highest predicted probability, their
    confidence or None without scores). Ties keep the file order; without scores the wrong samples
    are taken in turn from each true class (class id order), so the grid is not one class only."""
    label, pred = np.asarray(label), np.asarray(pred)
    wrong = np.flatnonzero(label != pred)
    if len(wrong) == 0:
        raise ValueError("predictions: every sample is classified right; no wrong sample to show")
    if probs is None:
        rank = np.zeros(len(wrong), dtype=np.int64)  # position of each wrong sample within its class
        for c in np.unique(label[wrong]):
            rank[label[wrong] == c] = np.arange(np.sum(label[wrong] == c))
        return wrong[np.lexsort((label[wrong], rank))][:count], None
    conf = probs[wrong, pred[wrong]]
    order = np.argsort(-conf, kind="stable")[:count]
    return wrong[order], conf[order]


# ----------------------------------------------------------------------------- reconstruction
def reconstruction_view(points, centers, mask, visible_patches, pred_patches,
                        title: str = "", up: str = "y") -> Scene:
    """Point-MAE reconstruction: input | visible patches (masked centres grey) | visible (grey)
    + reconstructed masked patches (each its own colour).

    points (N, 3); centers (G, 3); mask (G,) bool, True = masked; visible_patches (V, K, 3) and
    pred_patches (M, K, 3) in absolute coordinates (neighbourhood + centre), V + M = G.
    """
    points, centers = _check_points(points), _check_points(centers, "centers")
    mask = np.asarray(mask, dtype=bool)
    vis, pred = np.asarray(visible_patches, np.float64), np.asarray(pred_patches, np.float64)
    if mask.shape != (len(centers),):
        raise ValueError(f"mask: expected ({len(centers)},) bool, got {mask.shape}")
    if vis.ndim != 3 or vis.shape[0] != (~mask).sum() or vis.shape[2] != 3:
        raise ValueError(f"visible_patches: expected ({(~mask).sum()}, K, 3), got {vis.shape}")
    if pred.ndim != 3 or pred.shape[0] != mask.sum() or pred.shape[2] != 3:
        raise ValueError(f"pred_patches: expected ({mask.sum()}, K, 3), got {pred.shape}")
    colours, size = palette(len(centers)), _point_size(len(points))
    vis_colours = np.repeat(colours[~mask], vis.shape[1], axis=0)
    hidden = Layer(centers[mask], HIDDEN, kind="spheres", radius=_centre_radius(points, centers))
    panels = [
        Panel([Layer(points, height_colors(points, up), size)], f"input ({len(points)} points)"),
        Panel([Layer(vis.reshape(-1, 3), vis_colours, size), hidden],
              f"visible: {len(vis)} of {len(centers)} patches ({mask.mean():.0%} masked)"),
        Panel([Layer(vis.reshape(-1, 3), HIDDEN, size),
               Layer(pred.reshape(-1, 3), np.repeat(colours[mask], pred.shape[1], axis=0), size)],
              f"reconstructed {len(pred)} masked patches"),
    ]
    legend = [("patch (own colour)", tuple(colours[np.flatnonzero(~mask)[0]]) if (~mask).any() else HIDDEN),
              ("masked centre, context", HIDDEN)]
    return Scene(panels, title=title, legend=legend, up=up, camera_from=0)  # one scale: input's camera
