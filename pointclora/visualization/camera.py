"""A fixed pinhole camera shared by the Open3D renderer and the numpy fallback.

Both renderers use the same intrinsic and extrinsic matrices (OpenCV / Open3D
convention: camera x right, y down, z forward), so the two backends put every
point on the same pixel and a figure does not depend on which one ran.
"""
from dataclasses import dataclass

import numpy as np

UP_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class Camera:
    """intrinsic: (3, 3) float64, extrinsic: (4, 4) float64 world -> camera, image width x height px."""

    intrinsic: np.ndarray
    extrinsic: np.ndarray
    width: int
    height: int

    def project(self, points: np.ndarray):
        """points: (N, 3) -> (uv (N, 2) float pixel coordinates, depth (N,) along the optical axis)."""
        cam = points @ self.extrinsic[:3, :3].T + self.extrinsic[:3, 3]  # (N, 3) camera frame
        depth = cam[:, 2]
        uv = cam[:, :2] / np.maximum(depth, 1e-9)[:, None] @ np.diag(self.intrinsic[[0, 1], [0, 1]]).T
        uv = uv + self.intrinsic[:2, 2]
        return uv, depth


def _axis_vector(up: str) -> np.ndarray:
    if up not in UP_AXES:
        raise ValueError(f"up: expected one of {sorted(UP_AXES)}, got {up!r}")
    v = np.zeros(3)
    v[UP_AXES[up]] = 1.0
    return v


def fixed_camera(
    points: np.ndarray,
    width: int = 400,
    height: int = 400,
    up: str = "y",
    azimuth: float = 35.0,
    elevation: float = 25.0,
    fov: float = 30.0,
    margin: float = 1.08,
) -> Camera:
    """Deterministic view of a cloud: looks at its bounding-box centre from a fixed direction.

    points: (N, 3) float. The distance is chosen so that the bounding sphere
    fills the smaller image side (times ``margin``); azimuth and elevation are
    in degrees, measured around the ``up`` axis ('x', 'y' or 'z').
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"points: expected a non-empty (N, 3) array, got shape {points.shape}")
    up_vec = _axis_vector(up)
    centre = (points.min(0) + points.max(0)) / 2
    radius = max(float(np.linalg.norm(points - centre, axis=1).max()), 1e-6)
    # a right-handed (forward_ref, side_ref, up) frame so that the azimuth is measured consistently
    forward_ref = np.roll(up_vec, 1)  # y-up -> +x... a fixed horizontal axis
    side_ref = np.cross(up_vec, forward_ref)
    az, el = np.radians(azimuth), np.radians(elevation)
    horizontal = np.cos(az) * side_ref + np.sin(az) * forward_ref
    eye_dir = np.cos(el) * horizontal + np.sin(el) * up_vec  # from the centre towards the eye
    half_fov = np.radians(fov) / 2
    distance = radius * margin / np.sin(half_fov)
    eye = centre + distance * eye_dir
    z_axis = -eye_dir  # camera looks at the centre
    x_axis = np.cross(z_axis, up_vec)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)  # points down in the image
    rot = np.stack([x_axis, y_axis, z_axis])  # (3, 3) rows: camera axes in world coordinates
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = rot
    extrinsic[:3, 3] = -rot @ eye
    focal = min(width, height) / 2 / np.tan(half_fov)
    # Open3D's legacy renderer asks for the principal point at (w/2 - 0.5, h/2 - 0.5)
    intrinsic = np.array([[focal, 0, width / 2 - 0.5], [0, focal, height / 2 - 0.5], [0, 0, 1.0]])
    return Camera(intrinsic=intrinsic, extrinsic=extrinsic, width=int(width), height=int(height))
