#!/usr/bin/env python
"""The README's main command (`make demo`): the whole method on generated data, on CPU, in minutes.

    python tools/demo.py                      # outputs under runs/demo/, data under data/demo/

1. writes the procedural demo data (data/demo) when it is missing;
2. pre-trains a small Point-MAE on the ScanObjectNN-format PB_T50_RS training shapes, labels
   ignored (tools/pretrain.py --config configs/demo_pretrain.yaml);
3. fine-tunes CLoRA + CoTo from that checkpoint (tools/train.py --config configs/demo_clora.yaml
   --ckpts ...) and, for comparison, the same from a random backbone;
4. evaluates on the test split and writes predictions (tools/train.py --test --save-predictions),
   counts FLOPs (tools/profile_flops.py), renders patches, predictions and a reconstruction
   (tools/visualize.py);
5. prints a results table (also runs/demo/results.md) and where every output went.

Every stage runs the public command line in a subprocess, printed before it runs, so each one
can be repeated by hand. The demo stops at the first stage that fails.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRETRAIN_CONFIG = "configs/demo_pretrain.yaml"
FINETUNE_CONFIG = "configs/demo_clora.yaml"


class DemoError(RuntimeError):
    """A stage failed; the message names it and its command."""


@dataclass
class Stage:
    name: str
    seconds: float
    cpu_seconds: float


@dataclass
class Demo:
    out: Path
    data: Path
    device: str | None
    pretrain_opts: list = field(default_factory=list)
    finetune_opts: list = field(default_factory=list)
    stages: list = field(default_factory=list)

    def run(self, name: str, cmd: list, capture: bool = False) -> str:
        """Runs one stage's command in a subprocess; returns its stdout when `capture`."""
        shown = " ".join(str(c) for c in cmd)
        print(f"\n=== {name}\n$ {shown}", flush=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, *map(str, cmd)], cwd=REPO, text=True, env=child_env(self.out),
                              stdout=subprocess.PIPE if capture else None)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise DemoError(f"stage '{name}' failed with exit status {proc.returncode}: {shown}")
        self.stages.append(Stage(name, seconds, cpu))
        print(f"--- {name}: {seconds:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        return proc.stdout or ""

    def device_args(self) -> list:
        return ["--device", self.device] if self.device else []

    def opts(self, stage: str) -> list:
        """--opts for a stage: the data folder (both configs name data/demo), then the user's."""
        opts = []
        if self.data != (REPO / "data" / "demo").resolve():
            opts += [f"dataset.root={self.data / 'ScanObjectNN'}", f"dataset.generate_demo={self.data}"]
        opts += self.pretrain_opts if stage == "pretrain" else self.finetune_opts
        return ["--opts", *opts] if opts else []


def child_env(out: Path) -> dict:
    """The stages' environment: Open3D's offscreen renderer wants a private XDG_RUNTIME_DIR
    (without one it prints a harmless 'error:' line that would look like a failed stage)."""
    env = dict(os.environ)
    if not env.get("XDG_RUNTIME_DIR"):
        runtime = out / ".xdg-runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
    return env


# ----------------------------------------------------------------------------- stages
def make_data(demo: Demo) -> None:
    if (demo.data / "demo_info.json").is_file():
        print(f"\n=== demo data: found {demo.data} (delete it to regenerate)", flush=True)
        return
    demo.run("demo data", ["tools/make_demo_data.py", "--out", demo.data, "--seed", "0"])


def pretrain(demo: Demo) -> Path:
    out = demo.out / "pretrain"
    demo.run("pre-training (Point-MAE)", ["tools/pretrain.py", "--config", PRETRAIN_CONFIG, "--output-dir", out,
                                          *demo.device_args(), *demo.opts("pretrain")])
    return out / "pretrain.pth"


def finetune(demo: Demo, name: str, ckpt: Path | None) -> dict:
    out = demo.out / name
    cmd = ["tools/train.py", "--config", FINETUNE_CONFIG, "--output-dir", out, *demo.device_args()]
    cmd += ["--ckpts", ckpt] if ckpt else []
    label = "self-pre-trained" if ckpt else "random"
    demo.run(f"fine-tuning CLoRA + CoTo, {label} backbone", cmd + demo.opts("finetune"))
    return json.loads((out / "results.json").read_text())


def test_with_predictions(demo: Demo, name: str) -> dict:
    out = demo.out / name
    demo.run("test + predictions", ["tools/train.py", "--config", FINETUNE_CONFIG, "--output-dir", out, "--test",
                                    "--save-predictions", *demo.device_args(), *demo.opts("finetune")])
    return json.loads((out / "test_results.json").read_text())


def profile(demo: Demo) -> dict:
    text = demo.run("FLOPs (profiler)", ["tools/profile_flops.py", "--config", FINETUNE_CONFIG, "--format", "json",
                                         *demo.opts("finetune")], capture=True)
    result = json.loads(text)
    (demo.out / "profile.json").write_text(json.dumps(result, indent=1))
    return result


def visualize(demo: Demo, pretrained: Path) -> dict:
    pngs = {"patches": demo.out / "patches.png", "predictions": demo.out / "predictions.png",
            "reconstruction": demo.out / "reconstruction.png"}
    demo.run("render: FPS + kNN patches", ["tools/visualize.py", "--config", FINETUNE_CONFIG, "--split", "test",
                                           "--index", "0", "--view", "patches", "--out", pngs["patches"],
                                           *demo.opts("finetune")])
    demo.run("render: predictions", ["tools/visualize.py", "--predictions",
                                     demo.out / "clora_pretrained" / "predictions.npz", "--view", "grid",
                                     "--out", pngs["predictions"]])
    demo.run("render: reconstruction", ["tools/visualize.py", "--config", PRETRAIN_CONFIG, "--split", "test",
                                        "--index", "0", "--view", "reconstruction", "--checkpoint", pretrained,
                                        "--out", pngs["reconstruction"], *demo.opts("pretrain")])
    return pngs


# ----------------------------------------------------------------------------- report
def table(runs: dict, gflops: float, stages: list) -> list:
    """Markdown lines: the comparison, then the time of every stage."""
    times = {s.name: s.seconds for s in stages}
    lines = ["| fine-tuning (CLoRA + CoTo, demo ScanObjectNN test split) | test OA (%) | test mAcc (%) "
             "| trainable / total parameters | GFLOPs per sample | wall time (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, (res, stage) in runs.items():
        p = res["parameters"]
        lines.append(f"| {label} | {res['test']['oa']:.2f} | {res['test']['macc']:.2f} | {p['trainable']:,} / "
                     f"{p['total']:,} | {gflops:.3f} | {times.get(stage, float('nan')):.1f} |")
    lines += ["", "| stage | wall time (s) | CPU time (s) |", "|---|---:|---:|"]
    lines += [f"| {s.name} | {s.seconds:.1f} | {s.cpu_seconds:.1f} |" for s in stages]
    total = sum(s.seconds for s in stages)
    lines.append(f"| **total** | **{total:.1f}** | **{sum(s.cpu_seconds for s in stages):.1f}** |")
    return lines


LOAD_AT_START = os.getloadavg()


def machine() -> str:
    """The machine and how busy it was (1-minute load average at the start and now, per CPU core)."""
    import torch

    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), 1-min load average {LOAD_AT_START[0]:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} now")


def report(demo: Demo, pre: dict, rand: dict, tested: dict, prof: dict, pngs: dict, wall: float) -> None:
    gflops = prof["flops"] / 1e9
    runs = {"self-pre-trained Point-MAE backbone": (pre, "fine-tuning CLoRA + CoTo, self-pre-trained backbone"),
            "random backbone": (rand, "fine-tuning CLoRA + CoTo, random backbone")}
    lines = table(runs, gflops, demo.stages)
    gain = pre["test"]["oa"] - rand["test"]["oa"]
    verdict = (f"pre-training gains {gain:+.2f} OA points over the random backbone" if gain > 0 else
               f"WARNING: the self-pre-trained backbone does not beat the random one ({gain:+.2f} OA points)")
    md = ["# pointclora demo results", "", f"`python tools/demo.py`, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{wall / 60:.1f} min end to end on {machine()}.", "", *lines, "", verdict + ".",
          f"Test split re-evaluated from ckpt-best.pth: OA {tested['metrics']['oa']:.2f} %.", ""]
    (demo.out / "results.md").write_text("\n".join(md))
    print("\n==== demo results ====")
    print("\n".join(lines))
    print(f"\n{verdict}; {wall / 60:.1f} min end to end ({machine()}).")
    files = {
        "results table": demo.out / "results.md", "pre-trained checkpoint": demo.out / "pretrain" / "pretrain.pth",
        "pre-training run (logs, curves.png)": demo.out / "pretrain",
        "fine-tuning, pre-trained backbone": demo.out / "clora_pretrained",
        "fine-tuning, random backbone": demo.out / "clora_random",
        "predictions": demo.out / "clora_pretrained" / "predictions.npz", "profile": demo.out / "profile.json",
        **{f"{k} view": v for k, v in pngs.items()}, "demo data": demo.data,
    }
    print("\noutputs:")
    for what, path in files.items():
        print(f"  {what:38s} {path}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", default="runs/demo", help="where the runs, PNGs and results.md go")
    p.add_argument("--data", default="data/demo", help="demo data folder (generated when missing)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--pretrain-opts", nargs="*", default=[], metavar="KEY=VALUE",
                   help=f"overrides of {PRETRAIN_CONFIG}, e.g. train.epochs=40")
    p.add_argument("--finetune-opts", nargs="*", default=[], metavar="KEY=VALUE",
                   help=f"overrides of {FINETUNE_CONFIG} (both fine-tunings, test, profile, patches view)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    demo = Demo((REPO / args.output_dir).resolve(), (REPO / args.data).resolve(), args.device,
                list(args.pretrain_opts), list(args.finetune_opts))
    demo.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"pointclora demo: outputs under {demo.out}; {machine()}", flush=True)
    try:
        make_data(demo)
        ckpt = pretrain(demo)
        pre = finetune(demo, "clora_pretrained", ckpt)
        rand = finetune(demo, "clora_random", None)
        tested = test_with_predictions(demo, "clora_pretrained")
        prof = profile(demo)
        pngs = visualize(demo, ckpt)
    except (DemoError, FileNotFoundError, json.JSONDecodeError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    report(demo, pre, rand, tested, prof, pngs, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
