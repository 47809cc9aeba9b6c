"""Render a ``Scene`` to PNG (Open3D offscreen, or a numpy fallback) or to an Open3D window.

Open3D's legacy ``Visualizer`` with a hidden window renders through EGL on a
headless machine (Mesa). When no GL context can be created (no libEGL, no
driver) the numpy rasteriser below draws the same points with the same camera;
the PNG's header line says which renderer made it and why.
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from typing import List, Optional

import numpy as np

from .camera import Camera, fixed_camera
from .colors import BACKGROUND
from .compose import compose_png
from .scene import Layer, Panel, Scene

BACKENDS = ("auto", "open3d", "numpy")
_PROBE_CODE = (
    "import sys, open3d as o3d\n"
    "o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)\n"
    "v = o3d.visualization.Visualizer()\n"
    "sys.exit(0 if v.create_window(visible=False, width=8, height=8) else 3)\n"
)
_probe_cache = {}


def private_runtime_dir() -> None:
    """Open3D's GL set-up prints 'error: XDG_RUNTIME_DIR is invalid or not set' on headless machines
    (nothing fails): give it a private runtime folder (mode 0700, removed at exit) when the
    environment has no usable one."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and os.path.isdir(current) and os.access(current, os.W_OK):
        return
    folder = tempfile.mkdtemp(prefix="pointclora-xdg-")
    atexit.register(shutil.rmtree, folder, True)
    os.environ["XDG_RUNTIME_DIR"] = folder


def open3d_offscreen_available() -> tuple:
    """-> (ok, reason). Probed once per process in a subprocess, because a broken GL stack can crash."""
    private_runtime_dir()
    if "result" not in _probe_cache:
        try:
            proc = subprocess.run([sys.executable, "-c", _PROBE_CODE], capture_output=True, text=True, timeout=120)
            ok = proc.returncode == 0
            tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            reason = "open3d EGL/GLX offscreen context" if ok else f"open3d offscreen context failed: {tail}"
        except (subprocess.TimeoutExpired, OSError) as err:
            ok, reason = False, f"open3d offscreen probe failed: {err}"
        _probe_cache["result"] = (ok, reason)
    return _probe_cache["result"]


def has_display() -> bool:
    """True when an X11 or Wayland display is reachable (so a window can open)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("darwin", "win32")


# ----------------------------------------------------------------------------- numpy fallback
def _point_fragments(layer: Layer, camera: Camera):
    """-> (pixel index (F,), depth (F,), colour (F, 3)) of square splats, like Open3D's point_size."""
    uv, depth = camera.project(layer.points)
    size = max(int(round(layer.size)), 1)
    offsets = np.arange(size)
    # GL covers the pixels whose centre lies within size/2 of the point: the first is floor(u - size/2) + 1
    base = (np.floor(uv - size / 2) + 1).astype(np.int64)  # (N, 2) first covered pixel
    du, dv = np.meshgrid(offsets, offsets, indexing="xy")
    u = (base[:, 0:1] + du.reshape(1, -1)).reshape(-1)  # (N * size^2,)
    v = (base[:, 1:2] + dv.reshape(1, -1)).reshape(-1)
    rep = size * size
    return u, v, np.repeat(depth, rep), np.repeat(layer.colors, rep, axis=0)


def _sphere_fragments(layer: Layer, camera: Camera):
    """-> fragments of flat discs: the projected balls of radius ``layer.radius`` (unlit, as Open3D draws them)."""
    uv, depth = camera.project(layer.points)
    focal = camera.intrinsic[0, 0]
    us, vs, ds, cs = [], [], [], []
    for (cu, cv), z, colour in zip(uv, depth, layer.colors):
        r_px = max(focal * layer.radius / max(z, 1e-9), 1.0)
        span = np.arange(int(np.floor(cu - r_px)), int(np.ceil(cu + r_px)) + 1)
        rows = np.arange(int(np.floor(cv - r_px)), int(np.ceil(cv + r_px)) + 1)
        gu, gv = np.meshgrid(span, rows, indexing="xy")
        d2 = ((gu - cu) ** 2 + (gv - cv) ** 2) / r_px**2
        inside = d2 <= 1.0
        nz = np.sqrt(1.0 - d2[inside])  # (F,) the ball's front surface bulges towards the viewer
        us.append(gu[inside])
        vs.append(gv[inside])
        ds.append(z - nz * layer.radius)
        cs.append(np.tile(np.asarray(colour), (int(inside.sum()), 1)))
    if not us:
        return (np.zeros(0, np.int64),) * 2 + (np.zeros(0), np.zeros((0, 3)))
    return np.concatenate(us), np.concatenate(vs), np.concatenate(ds), np.concatenate(cs)


def render_panel_numpy(panel: Panel, camera: Camera) -> np.ndarray:
    """Z-buffered rasterisation of a panel -> (H, W, 3) uint8; the nearest fragment wins on every pixel."""
    parts = [(_sphere_fragments if layer.kind == "spheres" else _point_fragments)(layer, camera) for layer in panel.layers]
    u, v, depth, colour = (np.concatenate([p[i] for p in parts]) for i in range(4))
    keep = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height) & (depth > 0)
    pix = v[keep] * camera.width + u[keep]
    order = np.lexsort((depth[keep], pix))  # by pixel, then nearest first
    first = np.unique(pix[order], return_index=True)[1]
    image = np.tile(np.asarray(BACKGROUND), (camera.height * camera.width, 1))
    image[pix[order][first]] = colour[keep][order][first]
    return (np.clip(image, 0, 1).reshape(camera.height, camera.width, 3) * 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- Open3D
def _o3d_geometries(panel: Panel, offset=None) -> list:
    import open3d as o3d

    shift = np.zeros(3) if offset is None else np.asarray(offset, dtype=np.float64)
    geoms = []
    for layer in panel.layers:
        if layer.kind == "points":
            cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(layer.points + shift))
            cloud.colors = o3d.utility.Vector3dVector(np.clip(layer.colors, 0, 1))
            geoms.append(cloud)
            continue
        for centre, colour in zip(layer.points, layer.colors):
            ball = o3d.geometry.TriangleMesh.create_sphere(radius=layer.radius, resolution=10)
            ball.translate(centre + shift)
            ball.compute_vertex_normals()
            ball.paint_uniform_color(np.clip(colour, 0, 1))
            geoms.append(ball)
    return geoms


class Open3DOffscreen:
    """One hidden legacy Visualizer reused for every panel of a figure (each window costs ~0.5 s)."""

    def __init__(self, width: int, height: int):
        import open3d as o3d

        private_runtime_dir()
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
        self.o3d, self.width, self.height = o3d, width, height
        self.vis = o3d.visualization.Visualizer()
        if not self.vis.create_window(visible=False, width=width, height=height):
            raise RuntimeError("open3d: could not create an offscreen window (no GL context)")

    def render(self, panel: Panel, camera: Camera, point_size: float) -> np.ndarray:
        """-> (H, W, 3) uint8 image of the panel seen by ``camera`` (fixed, not Open3D's auto view)."""
        vis = self.vis
        vis.clear_geometries()
        for geom in _o3d_geometries(panel):
            vis.add_geometry(geom, reset_bounding_box=True)
        option = vis.get_render_option()
        option.background_color = np.asarray(BACKGROUND)
        option.point_size = float(point_size)
        option.light_on = False  # flat colours: Phong highlights would turn ball centres white (= background)
        params = vis.get_view_control().convert_to_pinhole_camera_parameters()
        intr = camera.intrinsic
        params.intrinsic = self.o3d.camera.PinholeCameraIntrinsic(
            camera.width, camera.height, intr[0, 0], intr[1, 1], intr[0, 2], intr[1, 2])
        params.extrinsic = camera.extrinsic
        vis.get_view_control().convert_from_pinhole_camera_parameters(params, allow_arbitrary=True)
        vis.poll_events()
        vis.update_renderer()
        buf = np.asarray(vis.capture_screen_float_buffer(do_render=True))  # (H, W, 3) float
        return (np.clip(buf, 0, 1) * 255 + 0.5).astype(np.uint8)

    def close(self):
        self.vis.destroy_window()


# ----------------------------------------------------------------------------- figure
def choose_backend(backend: str = "auto") -> tuple:
    """-> (name, note): 'open3d' or 'numpy', and the sentence the PNG header states."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "numpy":
        return "numpy", "numpy fallback rasteriser (requested)"
    try:
        import open3d  # noqa: F401
    except (ImportError, OSError) as err:
        if backend == "open3d":
            raise RuntimeError(f"backend 'open3d': cannot import open3d ({err}); see the README set-up") from err
        return "numpy", f"numpy fallback rasteriser (open3d not importable: {err})"
    ok, reason = open3d_offscreen_available()
    if ok:
        return "open3d", f"open3d offscreen ({reason})"
    if backend == "open3d":
        raise RuntimeError(f"backend 'open3d': {reason}")
    return "numpy", f"numpy fallback rasteriser (no GL context: {reason})"


def scene_cameras(scene: Scene, size: int) -> List[Camera]:
    """The fixed camera of every panel (fitted to ``scene.camera_from``'s panel when set)."""
    if scene.camera_from is not None:
        shared = fixed_camera(scene.panels[scene.camera_from].all_points(), size, size, up=scene.up)
        return [shared] * len(scene.panels)
    return [fixed_camera(panel.all_points(), size, size, up=scene.up) for panel in scene.panels]


def render_panels(scene: Scene, backend: str, size: int) -> List[np.ndarray]:
    """-> one (size, size, 3) uint8 image per panel, each with its own fixed camera."""
    cameras = scene_cameras(scene, size)
    if backend == "numpy":
        return [render_panel_numpy(p, c) for p, c in zip(scene.panels, cameras)]
    renderer = Open3DOffscreen(size, size)
    try:
        return [renderer.render(p, c, _point_size(p)) for p, c in zip(scene.panels, cameras)]
    finally:
        renderer.close()


def _point_size(panel: Panel) -> float:
    sizes = [layer.size for layer in panel.layers if layer.kind == "points"]
    return max(sizes) if sizes else 3.0


def render_scene(scene: Scene, out: str, backend: str = "auto", size: int = 360) -> dict:
    """Render every panel and compose the PNG ``out`` (titles, legend, renderer note).

    Returns {'path', 'backend', 'note', 'width', 'height'}.
    """
    name, note = choose_backend(backend)
    images = render_panels(scene, name, size)
    width, height = compose_png(scene, images, out, note)
    return {"path": out, "backend": name, "note": note, "width": width, "height": height}


def show_scene(scene: Scene, title: Optional[str] = None) -> None:
    """Open an interactive Open3D window with the panels side by side (legend printed to stdout)."""
    if not has_display():
        raise RuntimeError("no display found (DISPLAY / WAYLAND_DISPLAY unset): pass --out file.png to render offscreen")
    import open3d as o3d

    private_runtime_dir()
    geoms, cursor = [], 0.0
    for panel in scene.panels:
        pts = panel.all_points()
        width = float(np.ptp(pts[:, 0])) if len(pts) else 1.0
        geoms += _o3d_geometries(panel, offset=(cursor - pts[:, 0].min(), 0, 0))
        cursor += width * 1.2
    for name, colour in scene.legend:
        print(f"  {name}: rgb({', '.join(f'{c:.2f}' for c in colour)})")
    o3d.visualization.draw_geometries(geoms, window_name=title or scene.title or "pointclora")
