"""Views render to correct PNGs headless on CPU (Open3D EGL and the numpy fallback)."""
import numpy as np
import pytest

from conftest import tiny_model_config
from pointclora.visualization import views
from pointclora.visualization.camera import fixed_camera
from pointclora.visualization.colors import BACKGROUND, WRONG, label_colors, palette
from pointclora.visualization.compose import figure_size
from pointclora.visualization.render import (
    choose_backend, render_panel_numpy, render_panels, render_scene, scene_cameras,
)
from pointclora.visualization.scene import Layer, Panel, Scene

SIZE = 160  # panel pixels: small, the tests share 2 cores
BG = (np.asarray(BACKGROUND) * 255).astype(np.uint8)


def make_table(n: int = 512, seed: int = 0):
    """A table: a slab top (part 0) on four cylindrical legs (part 1) -> points (n, 3), seg (n,)."""
    rng = np.random.RandomState(seed)
    top = np.c_[rng.uniform(-1, 1, n // 2), rng.uniform(0.45, 0.55, n // 2), rng.uniform(-0.6, 0.6, n // 2)]
    legs = []
    for x, z in [(-0.85, -0.45), (0.85, -0.45), (-0.85, 0.45), (0.85, 0.45)]:
        th = rng.uniform(0, 2 * np.pi, n // 8)
        legs.append(np.c_[x + 0.06 * np.cos(th), rng.uniform(-0.6, 0.45, n // 8), z + 0.06 * np.sin(th)])
    return np.concatenate([top] + legs), np.r_[np.zeros(n // 2, int), np.ones(n // 2, int)]


def tiny_mae_config():
    return {"model": tiny_model_config("PointMAEPretrain", group_size=16, mask_ratio=0.6, decoder_depth=1)}


def build_view(name: str) -> Scene:
    points, seg = make_table()
    if name == "cloud":
        return views.cloud_view(points, color_by="normals", title="cloud")
    if name == "patches":
        return views.patches_view(points, num_group=16, group_size=32, title="patches")
    if name == "partseg":
        pred = seg.copy()
        pred[points[:, 0] > 0.6] = 1 - pred[points[:, 0] > 0.6]
        return views.partseg_view(points, seg, pred, ["top", "leg"], title="partseg")
    if name == "grid":
        clouds = [make_table(256, seed)[0] for seed in range(4)]
        return views.grid_view(clouds, ["a", "b", "c", "d"], [0, 1, 2, 1], ["desk", "table", "bench"], "grid")
    from pointclora.visualization.reconstruction import reconstruct

    out = reconstruct(tiny_mae_config(), None, points, seed=0)
    return views.reconstruction_view(points, out["centers"], out["mask"], out["visible_patches"],
                                     out["pred_patches"], "reconstruction")


def test_camera_centres_the_cloud_and_keeps_it_in_frame():
    points, _ = make_table()
    cam = fixed_camera(points, 200, 100)
    uv, depth = cam.project(points)
    centre_uv, _ = cam.project(((points.min(0) + points.max(0)) / 2)[None])
    assert np.allclose(centre_uv[0], [99.5, 49.5], atol=1e-6)
    assert (depth > 0).all() and (uv >= 0).all() and (uv[:, 0] < 200).all() and (uv[:, 1] < 100).all()
    assert np.array_equal(cam.extrinsic, fixed_camera(points, 200, 100).extrinsic)  # deterministic


def test_palette_is_deterministic_and_distinct():
    p = palette(60)
    assert p.shape == (60, 3) and np.array_equal(p, palette(60))
    assert len(np.unique(np.round(p, 3), axis=0)) == 60
    assert np.array_equal(label_colors(np.array([2, 0]))[0], palette(3)[2])
    with pytest.raises(ValueError, match="labels"):
        label_colors(np.array([-1, 0]))


def test_numpy_fallback_matches_open3d_pixels():
    points, seg = make_table()
    balls = Layer(points[:6], palette(6), kind="spheres", radius=0.05)
    scene = Scene([Panel([Layer(points, label_colors(seg), 3)]), Panel([Layer(points, label_colors(seg), 2), balls])])
    masks = {}
    for backend in ("numpy", "open3d"):
        masks[backend] = [(img != BG).any(-1) for img in render_panels(scene, backend, SIZE)]
    for a, b in zip(masks["numpy"], masks["open3d"]):
        assert (a & b).sum() / (a | b).sum() > 0.95  # same camera -> same pixels (measured 0.998 at 360 px)


def _panel_checks(scene: Scene, images) -> None:
    for panel, img, cam in zip(scene.panels, images, scene_cameras(scene, SIZE)):
        uv = np.floor(cam.project(panel.all_points())[0] + 0.5).astype(int)  # (N, 2) pixel of every point
        uv = uv[((uv >= 0) & (uv < SIZE)).all(1)]  # a shared camera may leave stray predictions out of frame
        assert len(uv) > 0.5 * len(panel.all_points()), panel.title
        covered = (img[uv[:, 1], uv[:, 0]] != BG).any(-1)
        assert covered.mean() > 0.97, panel.title  # a point lands wherever the cloud projects
        assert (img == BG).all(-1).mean() > 0.3, panel.title  # and not everywhere


@pytest.mark.parametrize("backend", ["open3d", "numpy"])
@pytest.mark.parametrize("name", ["cloud", "patches", "partseg", "grid", "reconstruction"])
def test_view_renders_png(tmp_path, name, backend):
    import matplotlib.image

    scene = build_view(name)
    images = render_panels(scene, backend, SIZE)
    _panel_checks(scene, images)
    info = render_scene(scene, str(tmp_path / f"{name}.png"), backend=backend, size=SIZE)
    png = (matplotlib.image.imread(info["path"])[..., :3] * 255).round().astype(np.uint8)
    assert info["backend"] == backend and backend in info["note"]
    assert png.shape[:2] == (info["height"], info["width"]) and (info["width"], info["height"]) == figure_size(scene, SIZE)
    assert len(np.unique(png.reshape(-1, 3), axis=0)) >= 8  # colour map + legend, not a blank image


def test_auto_backend_states_the_renderer():
    name, note = choose_backend("auto")
    assert name in ("open3d", "numpy") and note.startswith(name)
    with pytest.raises(ValueError, match="backend"):
        choose_backend("vulkan")


def test_partseg_highlights_exactly_the_wrong_points():
    points, seg = make_table()
    pred = seg.copy()
    pred[:10] = 1
    scene = views.partseg_view(points, seg, pred, ["top", "leg"])
    errors = scene.panels[2]
    wrong_layer = [layer for layer in errors.layers if np.allclose(layer.colors, WRONG)]
    assert len(wrong_layer) == 1 and len(wrong_layer[0].points) == 10
    assert [name for name, _ in scene.legend] == ["top", "leg", "wrong", "right"]
    img = render_panel_numpy(errors, fixed_camera(errors.all_points(), SIZE, SIZE))
    red = (np.abs(img.astype(int) - np.asarray(WRONG) * 255) < 2).all(-1)
    assert red.sum() > 10
    assert views.part_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == (0.75, pytest.approx((0.5 + 2 / 3) / 2))


def test_patches_cover_points_with_nearest_centre():
    points, _ = make_table()
    center, patch_idx, owner = views.group_patches(points, 16, 32)
    assert center.shape == (16, 3) and patch_idx.shape == (16, 32)
    covered = np.unique(patch_idx)
    assert np.array_equal(np.flatnonzero(owner >= 0), covered)
    for p in covered[:50]:
        containing = np.flatnonzero((patch_idx == p).any(1))
        d = np.linalg.norm(center[containing] - points[p], axis=1)
        assert owner[p] == containing[np.argmin(d)]


def test_confidently_wrong_order():
    label, pred = np.array([0, 1, 2, 0, 1]), np.array([0, 2, 1, 1, 1])
    probs = np.full((5, 3), 0.1)
    probs[1, 2], probs[2, 1], probs[3, 1] = 0.5, 0.9, 0.7
    idx, conf = views.select_confidently_wrong(label, pred, probs, 2)
    assert idx.tolist() == [2, 3] and conf.tolist() == [0.9, 0.7]
    assert views.select_confidently_wrong(label, pred, None, 5)[0].tolist() == [3, 1, 2]  # one per true class
    with pytest.raises(ValueError, match="every sample"):
        views.select_confidently_wrong(label, label, probs, 2)


def test_reconstruction_arrays_partition_the_patches():
    from pointclora.visualization.reconstruction import reconstruct

    points, _ = make_table()
    out = reconstruct(tiny_mae_config(), None, points, seed=3)
    assert out["mask"].sum() == int(0.6 * 16) and out["pred_patches"].shape == (9, 16, 3)
    assert out["visible_patches"].shape == (7, 16, 3)
    again = reconstruct(tiny_mae_config(), None, points, seed=3)
    assert np.array_equal(out["mask"], again["mask"])  # seeded mask
    with pytest.raises(ValueError, match="pred_patches"):
        views.reconstruction_view(points, out["centers"], out["mask"], out["visible_patches"], out["visible_patches"])


def test_reconstruction_loads_a_pretraining_checkpoint_and_names_a_file_that_is_not_one(tmp_path):
    import torch

    from pointclora.models import build_model
    from pointclora.visualization.reconstruction import reconstruct

    points, _ = make_table()
    torch.manual_seed(1)
    pretrain = build_model(tiny_mae_config()["model"])
    good = tmp_path / "pretrain.pth"
    torch.save({"base_model": pretrain.state_dict()}, good)
    loaded = reconstruct(tiny_mae_config(), str(good), points, seed=3)
    assert not np.array_equal(loaded["pred_patches"], reconstruct(tiny_mae_config(), None, points, seed=3)["pred_patches"])
    classifier = tmp_path / "classifier.pth"
    torch.save({"base_model": build_model(tiny_model_config("PointMAE", group_size=16)).state_dict()}, classifier)
    with pytest.raises(KeyError, match="classifier.pth does not fit PointMAEPretrain"):
        reconstruct(tiny_mae_config(), str(classifier), points, seed=3)


@pytest.mark.parametrize("bad, match", [(np.zeros((5, 2)), "points"), (np.zeros((0, 3)), "points")])
def test_views_reject_bad_shapes(bad, match):
    with pytest.raises(ValueError, match=match):
        views.cloud_view(bad)
    with pytest.raises(ValueError, match="seg"):
        views.partseg_view(np.zeros((4, 3)), np.zeros(3, int))
