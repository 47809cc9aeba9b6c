#!/usr/bin/env python
"""Classify (or part-segment) your own point clouds with a fine-tuned model.

    python tools/predict.py --ckpts runs/demo_clora/ckpt-best.pth --files a.ply b.pcd c.npy d.txt
    python tools/predict.py --config scanobjectnn_clora.yaml --ckpts pretrain.pth adapter-best.safetensors \\
        --files scan.ply --vote 10 --out preds.json
    python tools/predict.py --config shapenetpart_clora.yaml --ckpts runs/shapenetpart_clora/ckpt-best.pth \\
        --files chair.ply --category Chair --out-dir parts/

Classification prints the top-5 classes with probabilities per file. Part segmentation (a *PartSeg
model, --category NAME) writes each file back as a PLY with a per-point `part` property and colours.
Files: .ply, .pcd (ascii / binary), .npy, .txt (comma or space separated); xyz is used. Each file is
sampled and normalised as the evaluation split of the config's dataset does. A file that cannot be
read or has too few points gets one `error:` line and the others go on (exit status 1); bad
arguments or weights stop before any file (exit status 2).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout too

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pointclora.cli import EXIT_USER_ERROR, message  # noqa: E402
from pointclora.config import ConfigError, load_config, merge, parse_opts, set_by_dotted, validate  # noqa: E402
from pointclora.datasets import SEG_CLASSES  # noqa: E402
from pointclora.datasets.common import pc_normalize  # noqa: E402
from pointclora.engine import predict as P  # noqa: E402
from pointclora.visualization.colors import label_colors  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=None,
                   help="YAML config (a path or a name in configs/); default: the one stored in a training checkpoint")
    p.add_argument("--ckpts", nargs="+", required=True,
                   help="ckpt-best.pth, fine-tuned weights, or backbone.pth adapter-best.safetensors")
    p.add_argument("--files", nargs="+", required=True, help="point files: .ply .pcd .npy .txt")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--vote", type=int, default=1, help="passes averaged (scale-and-translate votes)")
    p.add_argument("--category", default=None, help="part segmentation: the object category (e.g. Chair)")
    p.add_argument("--top", type=int, default=5, help="classes shown per file")
    p.add_argument("--out", default=None, help="write the predictions as JSON here")
    p.add_argument("--out-dir", default=None, help="part segmentation: folder of the PLY files (default: parts/)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    return p.parse_args(argv)


def setup(args):
    """(cfg, model, task, class names, category index or None); raises on bad input."""
    if args.vote < 1 or args.top < 1:
        raise ValueError(f"--vote / --top: expected >= 1, got {args.vote} / {args.top}")
    read = P.read_weight_files(args.ckpts)  # each weights file read once
    train_ckpt = P.training_checkpoint(args.ckpts, read)
    if args.config:
        cfg = load_config(args.config, args.opts)
        if train_ckpt is not None:  # the checkpoint's model and adapters are what its weights fit
            cfg = merge(cfg, {k: train_ckpt["config"][k] for k in ("model", "adapter") if k in train_ckpt["config"]})
    elif train_ckpt is not None:
        cfg = dict(train_ckpt["config"])
        for key, value in parse_opts(args.opts):
            set_by_dotted(cfg, key, value)
        validate(cfg)
    else:
        raise ValueError("--config: needed unless --ckpts is a training checkpoint (ckpt-best.pth stores its config)")
    model = P.load_model(cfg, args.ckpts, train_ckpt, read)
    names = P.class_names(cfg, int(cfg["model"].get("cls_dim", 0))) if "cls_dim" in cfg["model"] else None
    task = P.build_task_for(cfg, names)
    category = None
    if task.name == "part_segmentation":
        categories = list(SEG_CLASSES)
        lower = {c.lower(): i for i, c in enumerate(categories)}
        if args.category is None or args.category.lower() not in lower:
            raise ValueError(f"--category: part segmentation needs one of {categories}, got {args.category!r}")
        category = lower[args.category.lower()]
    elif args.category is not None:
        raise ValueError("--category: only for part segmentation models (*PartSeg)")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return cfg, model, task, names, category, device


def classify(args, cfg, model, task, names, device, prepared) -> list:
    items = [{"points": torch.from_numpy(pts), "label": torch.tensor(0)} for _, _, pts in prepared]
    probs = P.run_model(model, task, cfg, items, args.vote, device)["probs"]  # (F, C)
    out = []
    for (path, _, _), p in zip(prepared, probs):
        top = torch.topk(p, min(args.top, p.numel()))
        best = [{"class": names[i], "index": int(i), "prob": float(v)} for v, i in zip(top.values, top.indices)]
        print(f"{path}: " + ", ".join(f"{b['class']} {100 * b['prob']:.1f} %" for b in best), flush=True)
        out.append({"file": str(path), "top": best})
    return out


def segment(args, cfg, model, task, category, device, prepared) -> list:
    npts = prepared[0][2].shape[0]
    items = [{"points": torch.from_numpy(pts), "category": torch.tensor(category),
              "seg": torch.zeros(npts, dtype=torch.long)} for _, _, pts in prepared]
    preds = P.run_model(model, task, cfg, items, args.vote, device)["pred_seg"].numpy()  # (F, npoints)
    folder = Path(args.out_dir or "parts")
    name = list(SEG_CLASSES)[category]
    out, used = [], set()
    for (path, xyz, pts), pred in zip(prepared, preds):
        parts = P.spread_labels(pc_normalize(xyz), pts, pred)  # every point of the file, nearest sampled one
        stem = Path(path).stem
        while stem in used:
            stem += "_"
        used.add(stem)
        ply = P.write_part_ply(folder / f"{stem}_parts.ply", xyz, parts, label_colors(parts, 50))
        counts = {int(k): int(v) for k, v in zip(*np.unique(parts, return_counts=True))}
        print(f"{path}: {name}, {len(xyz)} points -> {ply} (parts {counts})", flush=True)
        out.append({"file": str(path), "category": name, "ply": str(ply), "parts": counts})
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg, model, task, names, category, device = setup(args)
    except (ValueError, ConfigError, FileNotFoundError, KeyError, RuntimeError) as err:
        print(f"error: {message(err)}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    prepared, failed = [], []
    for path in args.files:
        try:
            xyz, pts = P.read_file(path, cfg)
        except P.PredictError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            failed.append({"file": str(path), "error": str(err)})
            continue
        prepared.append((path, xyz, pts))
    results = []
    if prepared:
        results = (segment(args, cfg, model, task, category, device, prepared) if category is not None
                   else classify(args, cfg, model, task, names, device, prepared))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        order = {str(p): i for i, p in enumerate(args.files)}
        entries = sorted(results + failed, key=lambda e: order[e["file"]])  # the order of --files
        Path(args.out).write_text(json.dumps({"ckpts": args.ckpts, "votes": args.vote, "task": task.name,
                                              "files": entries}, indent=2))
        print(f"written {args.out}")
    if failed:
        print(f"{len(failed)} of {len(args.files)} file(s) could not be predicted", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
