#!/usr/bin/env python
"""Parameters, MACs/FLOPs, training-step cost, FPS/kNN cost, latency and memory of a config.

    python tools/profile_flops.py --config scanobjectnn_clora.yaml
    python tools/profile_flops.py --config scanobjectnn_clora.yaml --merged --format markdown
    python tools/profile_flops.py --config scanobjectnn_clora.yaml --latency --batch 8 --device cuda
    python tools/profile_flops.py --compare scanobjectnn_full.yaml scanobjectnn_lora.yaml \
        scanobjectnn_clora.yaml scanobjectnn_clora.yaml:merged

Counts are per sample, on the real module graph (torch dispatch + module hooks), with the
conventions printed under every table. `--config` takes a path or a file name in configs/;
in `--compare`, `NAME:merged` profiles NAME with its adapters merged and `NAME+KEY=VALUE`
adds overrides to that row only (e.g. `modelnet40_full.yaml+adapter.method=lora+adapter.rank=8`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout too

from pointclora.cli import run_tool  # noqa: E402
from pointclora.config import load_config  # noqa: E402
from pointclora.profiler.latency import measure_latency  # noqa: E402
from pointclora.profiler.report import format_compare, format_result  # noqa: E402
from pointclora.profiler.summary import build_from_config, example_inputs, merge_note, profile_config  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="YAML config: a path, or a file name in configs/")
    src.add_argument("--compare", nargs="+", metavar="CONFIG[:merged][+KEY=VALUE]",
                     help="one table row per config")
    p.add_argument("--points", type=int, default=None, help="points per cloud (default: dataset.npoints)")
    p.add_argument("--batch", type=int, default=1, help="batch size (counts are per sample; latency uses it)")
    merge = p.add_mutually_exclusive_group()
    merge.add_argument("--merged", dest="merged", action="store_true", help="merge adapters into the weights")
    merge.add_argument("--unmerged", dest="merged", action="store_false", help="adapters as trained (default)")
    p.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    p.add_argument("--per-module", action="store_true", help="also list MACs per module")
    p.add_argument("--latency", action="store_true", help="time inference and one training step")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device for --latency")
    p.add_argument("--warmup", type=int, default=3, help="--latency: untimed runs first")
    p.add_argument("--iters", type=int, default=10, help="--latency: timed runs (median reported)")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    return p.parse_args(argv)


def parse_spec(spec: str, merged: bool):
    """'NAME[:merged][+key=value...]' -> (name, merged, extra overrides, row label)."""
    name, *extra = spec.split("+")
    if name.endswith(":merged"):
        name, merged = name[: -len(":merged")], True
    for opt in extra:
        if "=" not in opt:
            raise ValueError(f"--compare: override {opt!r} in {spec!r} is not KEY=VALUE")
    label = Path(name).stem + "".join(f" {o}" for o in extra)
    return name, merged, extra, label


def profile_one(spec: str, args: argparse.Namespace, merged: bool):

    name, merged, extra, label = parse_spec(spec, merged)
    cfg = load_config(name, list(args.opts) + extra)
    if merged and not cfg.get("adapter"):
        if args.compare:  # a full fine-tuning row in a --merged comparison
            merged = False
        else:
            raise ValueError(f"--merged: config '{name}' has no 'adapter' section, nothing to merge")
    result = profile_config(cfg, label, points=args.points, batch=args.batch, merged=merged,
                            per_module=args.per_module)
    if result.mode == "not mergeable":  # DAPT / IDPT / PointGST: the row is the unmerged model
        merged = False
        NOTES[label] = merge_note(cfg)
    if args.latency:
        result.latency = _latency(cfg, args, merged)
    return result


NOTES: dict = {}  # row label -> why its adapters cannot merge


def _latency(cfg, args, merged: bool) -> dict:
    model = build_from_config(cfg, merged)
    inputs = example_inputs(cfg, max(args.batch, 2), args.points)  # BatchNorm trains on >= 2 samples
    out = measure_latency(model, inputs, device=args.device, warmup=args.warmup, iters=args.iters,
                          train_step=any(p.requires_grad for p in model.parameters()))
    for d in out.values():
        d.update(device=args.device, batch=inputs[0].shape[0])
    return out


def run(args: argparse.Namespace) -> None:
    if args.compare:
        print(format_compare([profile_one(spec, args, args.merged) for spec in args.compare], args.format))
    else:
        print(format_result(profile_one(args.config, args, args.merged), args.format))
    for label, note in NOTES.items():
        print(f"{label}: not mergeable: {note}")


def main(argv=None) -> int:
    args = parse_args(argv)
    for flag in ("points", "batch", "iters"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            print(f"error: --{flag} must be >= 1, got {value}", file=sys.stderr, flush=True)
            return 2
    if args.warmup < 0:
        print(f"error: --warmup must be >= 0, got {args.warmup}", file=sys.stderr, flush=True)
        return 2
    return run_tool(lambda: run(args), errors=(ValueError, KeyError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
