"""What ``tools/visualize.py`` does behind its flags: pick the input, build the view, render or show.

Inputs (exactly one): ``--config C [--split test] [--index 7]`` (a dataset sample), ``--file
path`` (.txt/.npy/.h5/.ply/.pcd) or ``--predictions file.npz`` (``pointclora.io.save_predictions``).
``--out file.png`` renders offscreen; without it an Open3D window opens (a display is needed).
"""
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..config import load_config
from ..factory import build_split
from ..io import check_index
from . import io, views
from .reconstruction import reconstruct
from .render import BACKENDS, has_display, render_scene, show_scene
from .scene import Scene

VIEWS = ("cloud", "patches", "partseg", "grid", "reconstruction")


@dataclass
class VisualizeOptions:
    """What to show and where (the flags of tools/visualize.py, same names and defaults)."""

    config: Optional[str] = None  # experiment config: a sample of its dataset (with predictions: its run)
    file: Optional[str] = None  # point file: .txt, .npy, .h5 (sample index), .ply, .pcd
    predictions: Optional[str] = None  # prediction .npz of tools/train.py --test --save-predictions
    split: str = "test"
    index: int = 0
    view: str = "cloud"  # one of VIEWS
    out: Optional[str] = None  # PNG path; None opens an interactive window
    backend: str = "auto"  # one of render.BACKENDS
    color_by: str = "height"  # one of views.COLOR_BY
    num_group: Optional[int] = None  # patches: default the config's model.num_group, else 64
    group_size: Optional[int] = None  # patches: default the config's model.group_size, else 32
    class_name: Optional[str] = None  # grid: samples of this class (name or id)
    count: int = 8
    checkpoint: Optional[str] = None  # reconstruction: Point-MAE pre-training checkpoint
    mask_seed: int = 0
    size: int = 360
    up: str = "y"
    opts: List[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- inputs
def part_names_of(dataset) -> Optional[list]:
    """'Chair 1', 'Chair 2', ... from a part-seg dataset's ``seg_classes`` (category -> global part ids)."""
    seg_classes = getattr(dataset, "seg_classes", None)
    if not seg_classes:
        return getattr(dataset, "part_names", None)
    names = {pid: f"{cat} {k}" for cat, pids in seg_classes.items() for k, pid in enumerate(pids)}
    return [names.get(i, f"part {i}") for i in range(max(names) + 1)]


class Source:
    """The chosen input: a config's dataset, a point file or a prediction file."""

    def __init__(self, args):
        self.args, self.cfg, self.dataset, self.preds = args, None, None, None
        self.class_names, self.part_names = None, None
        given = [name for name in ("config", "file", "predictions") if getattr(args, name)]
        if not given or "file" in given and len(given) > 1:
            raise ValueError(f"expected one input: --config, --file or --predictions (--predictions may add --config), got {given or 'none'}")
        if args.config:
            self.cfg = load_config(args.config, args.opts)
        if args.predictions:
            self.preds = io.load_predictions(args.predictions, self.get_dataset() if self.cfg else None)
            self.class_names = self.preds["class_names"] or self.class_names
            self.part_names = self.preds.get("part_names", self.part_names)

    def get_dataset(self):
        if self.dataset is None:
            # the engine's evaluation sampling (ShapeNetPart: fixed per-index seed), so a sample and a
            # bare prediction file's points are the points the model saw
            self.dataset = build_split(self.cfg["dataset"], self.args.split)
            self.class_names = list(getattr(self.dataset, "classes", []) or []) or None
            self.part_names = part_names_of(self.dataset)
        return self.dataset

    def sample(self, index: int) -> dict:
        """-> {'points', optional 'normals' 'colors' 'label' 'category' 'seg' 'pred' 'pred_seg'}."""
        if self.preds is None and self.cfg is not None:
            return io.sample_from_dataset(self.get_dataset(), index)
        if self.preds is None:
            return io.load_point_file(self.args.file, index)
        p = self.preds
        check_index(index, len(p["points"]), self.args.predictions)
        keys = ("label", "pred", "seg", "pred_seg", "category")
        return {"points": p["points"][index], **{k: p[k][index] for k in keys if k in p}}

    def describe(self, index: int, sample: dict) -> str:
        where = self.args.file or self.args.predictions or f"{self.args.config} [{self.args.split}]"
        label = sample.get("label", sample.get("category"))
        name = f" ({views.label_name(self.class_names, int(label), 'class')})" if label is not None else ""
        return f"{where} #{index}{name}"

    def model_value(self, key: str, default: int) -> int:
        return int(((self.cfg or {}).get("model") or {}).get(key) or default)


# ----------------------------------------------------------------------------- views
def _cloud(src: Source, args) -> Scene:
    s = src.sample(args.index)
    return views.cloud_view(s["points"], s.get("normals"), s.get("colors"), args.color_by,
                            src.describe(args.index, s), args.up)


def _patches(src: Source, args) -> Scene:
    s = src.sample(args.index)
    g = args.num_group or src.model_value("num_group", 64)
    k = args.group_size or src.model_value("group_size", 32)
    return views.patches_view(s["points"], g, k, src.describe(args.index, s), args.up)


def _partseg(src: Source, args) -> Scene:
    s = src.sample(args.index)
    if "seg" not in s:
        raise ValueError(f"--view partseg: the input {src.describe(args.index, s)} has no part labels "
                         "(expected a 'seg' array: ShapeNetPart sample, 7-column .txt, .h5 with 'pid', or a part-seg prediction file)")
    return views.partseg_view(s["points"], s["seg"], s.get("pred_seg"), src.part_names,
                              src.describe(args.index, s), args.up)


def _class_id(name: str, class_names) -> int:
    if name.isdigit():
        return int(name)
    if class_names is None or name not in class_names:
        raise ValueError(f"--class: unknown class {name!r}; known: {', '.join(class_names or []) or 'none (use an id)'}")
    return list(class_names).index(name)


def _grid(src: Source, args) -> Scene:
    if args.count < 1:
        raise ValueError(f"--count: expected >= 1, got {args.count}")
    if src.preds is not None:
        return _grid_predictions(src, args)
    if src.cfg is None or args.class_name is None:
        raise ValueError("--view grid: needs --predictions, or --config with --class NAME")
    dataset = src.get_dataset()
    target = _class_id(args.class_name, src.class_names)
    clouds, titles = [], []
    for i in range(len(dataset)):
        s = io.sample_from_dataset(dataset, i)
        if s.get("label", s.get("category")) == target:
            clouds.append(s["points"])
            titles.append(f"#{i}")
        if len(clouds) == args.count:
            break
    if not clouds:
        raise ValueError(f"--class: no sample of class {args.class_name!r} in split {args.split!r}")
    name = views.label_name(src.class_names, target, "class")
    return views.grid_view(clouds, titles, [target] * len(clouds), src.class_names, f"{name}: {len(clouds)} samples", args.up)


def _grid_predictions(src: Source, args) -> Scene:
    p, names = src.preds, src.class_names
    if "label" not in p:
        raise ValueError(f"--view grid: {args.predictions} holds no classification ('label'/'pred')")
    probs = p.get("probs")
    if probs is None and "logits" in p:
        probs = views.softmax(p["logits"].astype(np.float64))
    if args.class_name is not None:
        target = _class_id(args.class_name, names)
        idx, conf, heading = views.select_class(p["label"], target, args.count), None, f"class {views.label_name(names, target, 'class')}"
    else:
        idx, conf = views.select_confidently_wrong(p["label"], p["pred"], probs, args.count)
        heading = "most confidently wrong" if conf is not None else "wrong (no scores in the file)"
    titles = []
    for j, i in enumerate(idx):
        tail = f" {conf[j]:.2f}" if conf is not None else ""
        titles.append(f"#{i} {views.label_name(names, int(p['label'][i]), 'class')} -> {views.label_name(names, int(p['pred'][i]), 'class')}{tail}")
    return views.grid_view([p["points"][i] for i in idx], titles, p["label"][idx], names,
                           f"{heading}: {len(idx)} samples (title: true -> predicted)", args.up)


def _reconstruction(src: Source, args) -> Scene:
    if src.cfg is None:
        raise ValueError("--view reconstruction: needs --config (the Point-MAE pre-training config) and --checkpoint")
    s = src.sample(args.index)
    out = reconstruct(src.cfg, args.checkpoint, s["points"], seed=args.mask_seed)
    weights = args.checkpoint or "random weights (no --checkpoint)"
    return views.reconstruction_view(s["points"], out["centers"], out["mask"], out["visible_patches"],
                                     out["pred_patches"], f"{src.describe(args.index, s)}: {weights}", args.up)


BUILDERS = {"cloud": _cloud, "patches": _patches, "partseg": _partseg, "grid": _grid, "reconstruction": _reconstruction}


def _check_out(out: str) -> None:
    """--out's folder exists (it is created when missing) and takes a file, before any rendering."""
    import os
    import tempfile

    folder = os.path.dirname(os.path.abspath(out))
    blocker = next((p for p in [folder] + [os.path.dirname(folder)] if os.path.isfile(p)), None)
    if blocker is not None:
        raise OSError(f"--out: cannot write the PNG {out!r}: {blocker!r} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OSError(f"--out: cannot write the PNG {out!r}: folder {folder!r}: {err.strerror or err}") from None
    if os.path.isdir(out):
        raise OSError(f"--out: {out!r} is a folder; give a file name such as {os.path.join(out, 'view.png')!r}")


def visualize(options: VisualizeOptions) -> int:
    """Builds the view and renders it to options.out (or shows it); bad input raises ValueError & co."""
    args = options
    if args.out is None and not has_display():
        print("error: no display found (DISPLAY / WAYLAND_DISPLAY unset) and no --out given; "
              "pass --out file.png to render offscreen", file=sys.stderr)
        return 2
    if args.size < 64:
        raise ValueError(f"--size: expected >= 64 pixels, got {args.size}")
    if args.out is not None:
        _check_out(args.out)
    scene = BUILDERS[args.view](Source(args), args)
    if args.out is None:
        show_scene(scene)
        return 0
    info = render_scene(scene, args.out, backend=args.backend, size=args.size)
    print(f"wrote {info['path']} ({info['width']}x{info['height']} px, view {args.view}); renderer: {info['note']}")
    return 0
