#!/usr/bin/env python
"""Parameters, MACs (thop-style and ours), training-step FLOPs, mergeability and adapter file size
of every method at full size, from the shipped ScanObjectNN configs.

    .venv/bin/python bench/method_costs.py        # ~2 min: bench/results/method_costs.md

Counts come from the profiler (pointclora.profiler, per sample, 2048 points, 128 groups of 32);
the file size is `save_adapter` of the freshly built model (adapter + trainable head + config,
plus BatchNorm statistics for the methods that update them). Linear probing trains
cls_head_finetune only, as in bench/train_step.py. Run times are in bench/train_step.py.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import train_step  # noqa: E402
from bench.common import RESULTS_DIR, command_line, machine_header, markdown_table, write_result  # noqa: E402
from pointclora.adapters import save_adapter  # noqa: E402
from pointclora.profiler.summary import build_from_config, merge_note, profile_config  # noqa: E402

ROWS = [  # (label, method key of bench/train_step.py)
    ("full fine-tuning", "full"), ("linear probing (head only)", "linear"), ("LoRA r=8 (qkv)", "lora"),
    ("CLoRA r=8 p=4 (input)", "clora"), ("CLoRA + CoTo", "clora_coto"), ("DAPT", "dapt"),
    ("IDPT", "idpt"), ("PointGST", "pointgst"),
]


def method_cfg(key: str):
    """The config bench/train_step.py uses for `key` (None when the method has no config yet)."""
    return train_step.method_config(key) if key in train_step.METHODS else None


def row(label: str, cfg, points: int) -> list:
    r = profile_config(cfg, label, points=points, batch=1)
    size = "-"
    if cfg.get("adapter"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "adapter.safetensors"
            save_adapter(build_from_config(cfg), str(path))
            size = f"{path.stat().st_size / 1e6:.2f} MB"
    if not cfg.get("adapter"):
        merged = "-"
    elif merge_note(cfg):
        merged = "not mergeable"
    else:
        merged = f"{profile_config(cfg, label, points=points, merged=True).thop_macs / 1e9:.3f}"
    return [label, f"{r.params['trainable']:,}", f"{r.params['total']:,}", f"{r.thop_macs / 1e9:.3f}",
            f"{r.macs / 1e9:.3f}", merged, f"{r.train_flops / 1e9:.2f}", size]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=2048)
    p.add_argument("--out", default=str(RESULTS_DIR / "method_costs.md"))
    args = p.parse_args(argv)
    header = machine_header(command_line(), "Method costs: parameters, MACs, adapter file (ScanObjectNN, full size)")
    rows, missing = [], []
    for label, key in ROWS:
        cfg = method_cfg(key)
        if cfg is None:
            missing.append(label)
            continue
        rows.append(row(label, cfg, args.points))
        print(" | ".join(rows[-1]), flush=True)
    table = markdown_table(["method", "trainable", "total", "GMACs thop-style", "GMACs ours",
                            "merged GMACs thop-style", "train-step GFLOPs", "adapter file"], rows)
    text = header + "\n" + table + ("\nnot measured (no config yet): " + ", ".join(missing) + "\n" if missing else "")
    write_result(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
