#!/usr/bin/env python
"""Training-step time and memory of full fine-tuning, linear probing, LoRA, CLoRA, CLoRA+CoTo, DAPT, PointGST.

    .venv/bin/python bench/train_step.py                       # CPU, batch 8, writes bench/results/train_step_cpu.md
    .venv/bin/python bench/train_step.py --device cuda         # batch 32, writes bench/results/train_step_cuda.md
    .venv/bin/python bench/train_step.py --attention explicit sdpa --precision fp32 bf16   # + attention/precision table

Full-size Point-MAE at the ScanObjectNN setting (configs/scanobjectnn_*.yaml: 2048 points, 128 groups
of 32, 384 wide, 12 blocks, 15 classes). One training step is the trainer's own step (engine.Trainer:
forward, cross-entropy (+ SADE when configured), backward, gradient clipping, AdamW step, CoTo draw),
timed for all methods in one process, alternating methods inside every repetition. Peak memory is
CUDA max allocated on GPU; on CPU, the growth of the peak resident set size over the model's during
a few steps, measured in a fresh subprocess per method. Inference latency compares unmerged and
merged adapters. Inputs are random points (timings do not depend on the shapes).

With several --attention (model.attention: explicit, sdpa) or --precision (fp32, bf16 autocast)
values, the methods of --compare-methods also run in every other combination, timed in the same
alternation, and a second table gives each combination's step time (and, on CUDA, the step's peak
memory above what is resident before it) as a ratio to the first attention and precision listed.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench.common` from a checkout

from bench.common import (RESULTS_DIR, command_line, load_average, machine_header, markdown_table, median,
                          reset_peak_rss, rss_bytes, synchronize, time_alternating, write_result)
from pointclora.adapters import CoToScheduler, adapter_layers, count_parameters, merge_adapters  # noqa: E402
from pointclora.config import load_config  # noqa: E402
from pointclora.engine import builders as B  # noqa: E402
from pointclora.engine.distributed import DistInfo  # noqa: E402
from pointclora.engine.optim import build_optimizer, build_scheduler  # noqa: E402
from pointclora.engine.tasks import ClassificationTask  # noqa: E402
from pointclora.engine.trainer import Trainer  # noqa: E402
from pointclora.factory import build_model_with_adapters  # noqa: E402
from pointclora.sweep.grid import fit_section  # noqa: E402

METHODS = ("full", "linear", "lora", "clora", "clora_coto", "dapt", "idpt", "pointgst")
LABELS = {"full": "full fine-tuning", "linear": "linear probing (head only)", "lora": "LoRA r=8 (qkv)",
          "clora": "CLoRA r=8 p=4 (input)", "clora_coto": "CLoRA + CoTo (p=0.5)", "dapt": "DAPT (rank 64)",
          "idpt": "IDPT (DGCNN prompt, layer 11)", "pointgst": "PointGST (rank 36, local 32)"}
CONFIGS = {"full": "scanobjectnn_full.yaml", "linear": "scanobjectnn_full.yaml", "lora": "scanobjectnn_lora.yaml",
           "clora": "scanobjectnn_clora.yaml", "clora_coto": "scanobjectnn_clora_coto.yaml",
           "dapt": "scanobjectnn_dapt.yaml", "idpt": "scanobjectnn_idpt.yaml", "pointgst": "scanobjectnn_pointgst.yaml"}
ATTENTIONS = ("explicit", "sdpa")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # autocast dtype of the step
COTO_P = 0.5  # CoTo mid-ramp: every block's adapters on with probability 0.5
NPOINTS = 2048  # ScanObjectNN setting (finetune_scan_hardest.yaml)


def method_config(method: str, model_overrides: Optional[Mapping] = None) -> dict:
    """The shipped ScanObjectNN config of `method`; linear probing trains cls_head_finetune only."""

    if method not in CONFIGS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    cfg = load_config(CONFIGS[method])
    if method == "linear":
        cfg["adapter"] = {"method": "none", "trainable_modules": ["cls_head_finetune"]}
    cfg["model"].update(model_overrides or {})
    if cfg.get("adapter"):  # tiny test widths: the sweep's size rule fits PointGST's windows, IDPT's prompt
        cfg["adapter"] = fit_section(cfg["adapter"], cfg["model"])[0]
    return cfg


@dataclass
class Variant:
    """One method ready to step: model (train mode), its Trainer and its parameter counts."""

    method: str
    model: torch.nn.Module
    trainer: object
    params: Dict[str, int]


def build_variant(method: str, device: torch.device, model_overrides: Optional[Mapping] = None,
                  seed: int = 0) -> Variant:
    """Model + adapters + AdamW + CoTo (fixed at p=0.5) + engine.Trainer, as tools/train.py builds them."""

    cfg = method_config(method, model_overrides)
    B.set_seed(seed)
    model, adapter_cfg = build_model_with_adapters(cfg, None)
    model = model.to(device).train()
    optimizer = build_optimizer(model, cfg["optimizer"])
    scheduler = build_scheduler(optimizer, cfg.get("scheduler", {}), int(cfg["train"]["epochs"]))
    coto = None
    if adapter_cfg is not None and adapter_cfg.coto:
        # a ramp of 10^9 steps keeps p(t) = 0.5 + 0.5 t / 10^9 at 0.5 for the whole benchmark
        coto = CoToScheduler(model, total_steps=10**9, p_start=COTO_P, ramp_fraction=1.0, seed=seed)
    regularize = adapter_cfg is not None and adapter_cfg.sade_weight > 0
    trainer = Trainer(model, ClassificationTask(int(cfg["model"]["cls_dim"])), optimizer, scheduler,
                      DistInfo(device=torch.device(device)), cfg, coto=coto, use_regularizer=regularize)
    return Variant(method, model, trainer, count_parameters(model))


def make_batch(batch: int, npoints: int, num_classes: int, device, seed: int = 0) -> dict:
    """{'points': (B, N, 3) float in the unit ball, 'label': (B,) int64}, seeded."""
    gen = torch.Generator().manual_seed(seed)
    pts = torch.randn(batch, npoints, 3, generator=gen)
    pts = pts / pts.norm(dim=-1, keepdim=True).clamp_min(1e-6) * torch.rand(batch, npoints, 1, generator=gen)
    labels = torch.randint(0, num_classes, (batch,), generator=gen)
    return {"points": pts.to(device), "label": labels.to(device)}


def train_step(variant: Variant, batch: Mapping) -> float:
    """One optimizer step through the trainer's code path; returns the loss."""
    loss, _ = variant.trainer.train_step(batch)
    return float(loss.detach())


def set_precision(variant: Variant, precision: str) -> Variant:
    """The trainer's autocast dtype (its config only enables autocast on CUDA; set it on CPU too)."""
    variant.trainer.dtype = PRECISIONS[precision]
    return variant


def combo_name(method: str, attention: str, precision: str) -> str:
    return f"{method}|{attention}|{precision}"


def build_combos(args, device) -> Dict[str, Variant]:
    """Variants of --compare-methods in every (attention, precision) but the first, by combo_name."""
    out = {}
    first = (args.attention[0], args.precision[0])
    for method in args.compare_methods:
        for attention, precision in itertools.product(args.attention, args.precision):
            if (attention, precision) != first:
                v = build_variant(method, device, {**args.model_opts, "attention": attention})
                out[combo_name(method, attention, precision)] = set_precision(v, precision)
    return out


def cuda_step_peak(variant: Variant, batch: Mapping, device) -> Optional[int]:
    """Bytes allocated at the peak of one step above what was allocated before it (CUDA only)."""
    if torch.device(device).type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    train_step(variant, batch)
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def combo_table(args, times: Mapping[str, list], peaks: Mapping[str, Optional[int]]) -> str:
    """Step time (and CUDA step peak) of every combination, as ratios to the first one listed."""
    rows = []
    first = (args.attention[0], args.precision[0])
    for method in args.compare_methods:
        ref_name = combo_name(method, *first)
        ref_t, ref_m = median(times[ref_name]), peaks.get(ref_name)
        for attention, precision in itertools.product(args.attention, args.precision):
            name = combo_name(method, attention, precision)
            t, m = median(times[name]), peaks.get(name)
            rows.append([LABELS[method], attention, precision, f"{t:.0f}", f"{min(times[name]):.0f}",
                         f"{t / ref_t:.2f}", _mib(m), f"{m / ref_m:.2f}" if m and ref_m else "n/a"])
    headers = ["method", "attention", "precision", "step median (ms)", "min (ms)",
               f"time vs {first[0]} {first[1]}", "step peak above resident (MiB, CUDA)",
               f"memory vs {first[0]} {first[1]}"]
    return markdown_table(headers, rows)


def time_train_steps(variants: Mapping[str, Variant], batch: Mapping, device, warmup: int, reps: int) -> Dict[str, list]:
    """{method: [ms per step] * reps}, methods alternating inside every repetition."""
    for v in variants.values():
        v.model.train()
    fns = {m: (lambda v=v: train_step(v, batch)) for m, v in variants.items()}
    return time_alternating(fns, device, warmup, reps)


def inference_models(variants: Mapping[str, Variant]) -> Dict[str, torch.nn.Module]:
    """Eval-mode models: the backbone (full), and unmerged / merged copies of LoRA and CLoRA."""

    out = {}
    if "full" in variants:
        out["backbone (full fine-tuning)"] = variants["full"].model
    for method in ("lora", "clora"):
        if method in variants:
            out[f"{LABELS[method]}, unmerged"] = variants[method].model
            out[f"{LABELS[method]}, merged"] = merge_adapters(copy.deepcopy(variants[method].model))
    for model in out.values():
        model.eval()
    return out


def make_adapters_nonzero(variants: Mapping[str, Variant], seed: int = 0) -> None:
    """Random adapter updates (B / Q are zero at init), so merged vs unmerged compares real deltas."""

    gen = torch.Generator().manual_seed(seed)
    for v in variants.values():
        for _, layer in adapter_layers(v.model):
            for name, p in layer.named_parameters():
                if not name.startswith("base_layer.") and p.abs().max() == 0:
                    with torch.no_grad():
                        p.copy_(torch.randn(p.shape, generator=gen).to(p) * 0.02)


def time_inference(models: Mapping[str, torch.nn.Module], points: torch.Tensor, device, warmup: int,
                   reps: int) -> Dict[str, list]:
    """{name: [ms per forward]}, no grad, eval mode, alternating."""
    def forward(m):
        with torch.no_grad():
            m(points)

    return time_alternating({n: (lambda m=m: forward(m)) for n, m in models.items()}, device, warmup, reps)


def merged_max_diff(models: Mapping[str, torch.nn.Module], points: torch.Tensor) -> Dict[str, float]:
    """max |logits(unmerged) - logits(merged)| for every adapter method (FPS/kNN are deterministic)."""
    out = {}
    with torch.no_grad():
        for name, model in models.items():
            if name.endswith(", merged"):
                ref = models[name.replace(", merged", ", unmerged")]
                out[name.replace(", merged", "")] = float((model(points) - ref(points)).abs().max())
    return out


# ------------------------------------------------------------------ memory
def memory_probe(method: str, device, batch: int, steps: int = 3, model_overrides: Optional[Mapping] = None,
                 npoints: int = NPOINTS, precision: str = "fp32") -> dict:
    """Peak memory of `steps` training steps of `method` in this process (run it in a fresh one).

    CUDA: max allocated (reset after building the model); CPU: VmHWM reset to the RSS after building
    the model. growth_bytes = peak - memory right before the first step: gradients, optimizer state,
    activations, workspace. returns {'baseline_bytes', 'peak_bytes', 'growth_bytes', 'kind'}.
    """
    import gc

    device = torch.device(device)
    v = set_precision(build_variant(method, device, model_overrides), precision)
    data = make_batch(batch, npoints, v.model.cls_dim, device)
    gc.collect()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base, kind = torch.cuda.memory_allocated(device), "cuda_max_allocated"
    else:
        kind = "cpu_peak_rss" if reset_peak_rss() else "cpu_peak_rss_since_process_start"
        base = rss_bytes("VmRSS")
    for _ in range(steps):
        train_step(v, data)
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else rss_bytes("VmHWM")
    return {"baseline_bytes": base, "peak_bytes": peak, "growth_bytes": peak - base, "kind": kind}


def measure_memory(methods, device, batch: int, steps: int = 3, model_overrides: Optional[Mapping] = None,
                   npoints: int = NPOINTS, precision: str = "fp32") -> Dict[str, dict]:
    """memory_probe of every method, each in a fresh subprocess (nothing left over from the others)."""
    out = {}
    for method in methods:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", method, "--device", str(device),
               "--batch", str(batch), "--memory-steps", str(steps), "--npoints", str(npoints),
               "--model-opts", json.dumps(dict(model_overrides or {})), "--precision", precision]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe of {method!r} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        out[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# ------------------------------------------------------------------ report
def _mib(n: Optional[int]) -> str:
    return "n/a" if n is None else f"{n / 2**20:.0f}"


def step_table(times: Mapping[str, list], variants: Mapping[str, Variant], memory: Optional[Mapping[str, dict]]) -> str:
    """Markdown table: trainable parameters, median step time and memory, with ratios to full fine-tuning."""
    ref_t = median(times["full"]) if "full" in times else None
    ref_m = memory["full"]["growth_bytes"] if memory and "full" in memory else None
    rows = []
    for method, ts in times.items():
        t = median(ts)
        q = sorted(ts)
        row = [LABELS[method], f"{variants[method].params['trainable']:,}", f"{t:.0f}", f"{q[0]:.0f}",
               f"{q[len(q) // 4]:.0f}-{q[(3 * len(q)) // 4]:.0f}", f"{t / ref_t:.2f}" if ref_t else "n/a"]
        if memory:
            m = memory[method]
            row += [_mib(m["growth_bytes"]), f"{m['growth_bytes'] / ref_m:.2f}" if ref_m else "n/a", _mib(m["peak_bytes"])]
        rows.append(row)
    headers = ["method", "trainable params", "step median (ms)", "min (ms)", "p25-p75 (ms)", "time vs full"]
    if memory:
        headers += ["step memory (MiB)", "memory vs full", "peak (MiB)"]
    return markdown_table(headers, rows)


def inference_table(times: Mapping[str, list], diffs: Mapping[str, float]) -> str:
    ref = median(next(iter(times.values())))
    rows = [[name, f"{median(ts):.0f}", f"{min(ts):.0f}", f"{median(ts) / ref:.2f}"] for name, ts in times.items()]
    text = markdown_table(["model (eval, no grad)", "forward median (ms)", "min (ms)", "vs backbone"], rows)
    for name, d in diffs.items():
        text += f"\nmax |logits unmerged - merged| for {name}: {d:.2e}"
    return text + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=int, default=None, help="default: 32 on cuda (the recipe), 8 on cpu")
    p.add_argument("--npoints", type=int, default=NPOINTS)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per method before timing")
    p.add_argument("--reps", type=int, default=8, help="timed steps per method (alternating)")
    p.add_argument("--memory-steps", type=int, default=3)
    p.add_argument("--no-memory", action="store_true", help="skip the per-method memory subprocesses")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--attention", nargs="+", default=["explicit"], choices=ATTENTIONS,
                   help="model.attention values; the first is the main table's, the others go to the second table")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=list(PRECISIONS),
                   help="autocast dtypes of the step; the first is the main table's")
    p.add_argument("--compare-methods", nargs="+", default=None, choices=METHODS,
                   help="methods run in every attention/precision (default: all on cuda, full and clora on cpu)")
    p.add_argument("--model-opts", default="{}", help="JSON of model overrides (tests: tiny widths)")
    p.add_argument("--out", default=None, help="result file (default bench/results/train_step_<device>.md)")
    p.add_argument("--no-inference", action="store_true", help="skip the unmerged/merged inference timing")
    p.add_argument("--append", action="store_true", help="append the report (own header) to --out instead of replacing it")
    p.add_argument("--memory-probe", default=None, choices=METHODS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")
    args.batch = args.batch or (32 if args.device == "cuda" else 8)
    if args.batch < 2:
        p.error(f"--batch: a training step needs at least 2 samples (BatchNorm in the head), got {args.batch}")
    try:
        args.model_opts = json.loads(args.model_opts)
    except json.JSONDecodeError as err:
        p.error(f"--model-opts: expected a JSON object, got {args.model_opts!r} ({err})")
    if "full" not in args.methods:
        p.error("--methods: 'full' is needed, every ratio is to full fine-tuning")
    if args.compare_methods is None:
        args.compare_methods = [m for m in args.methods if args.device == "cuda" or m in ("full", "clora")]
    missing = [m for m in args.compare_methods if m not in args.methods]
    if missing:
        p.error(f"--compare-methods: {missing} are not in --methods {args.methods}")
    if len(set(args.attention)) != len(args.attention) or len(set(args.precision)) != len(args.precision):
        p.error("--attention / --precision: each value once")
    return args


def run(args) -> str:
    """Times everything, returns the markdown report."""
    device = torch.device(args.device)
    args.header = machine_header(command_line(), f"Training step: {args.device.upper()}")  # date / load at start
    base_opts = {**args.model_opts, "attention": args.attention[0]}
    variants = {m: set_precision(build_variant(m, device, base_opts), args.precision[0]) for m in args.methods}
    combos = build_combos(args, device)
    data = make_batch(args.batch, args.npoints, variants["full"].model.cls_dim, device)
    times = time_train_steps({**variants, **combos}, data, device, args.warmup, args.reps)
    combo_times = {combo_name(m, args.attention[0], args.precision[0]): times[m] for m in args.compare_methods}
    combo_times.update({name: times.pop(name) for name in combos})
    peaks = {}
    if combos:
        both = {**{combo_name(m, args.attention[0], args.precision[0]): variants[m] for m in args.compare_methods},
                **combos}
        peaks = {name: cuda_step_peak(v, data, device) for name, v in both.items()}
    del combos  # frees their models before the memory subprocesses and the inference timing
    memory = None if args.no_memory else measure_memory(args.methods, device, args.batch, args.memory_steps,
                                                         base_opts, args.npoints, args.precision[0])
    inf_times, diffs = None, {}
    if not args.no_inference:
        make_adapters_nonzero(variants)
        models = inference_models(variants)
        inf_times = time_inference(models, data["points"], device, args.warmup, args.reps)
        diffs = merged_max_diff(models, data["points"])
    text = report(args, times, variants, memory, inf_times, diffs)
    if len(combo_times) > len(args.compare_methods):
        text += ("\n## Attention and precision\n\n" + f"Same steps and alternation as above (batch {args.batch}); "
                 f"ratios are to {args.attention[0]} attention in {args.precision[0]} for the same method.\n\n"
                 + combo_table(args, combo_times, peaks))
    return text


def report(args, times, variants, memory, inf_times, diffs) -> str:
    cfg = variants["full"].model
    setting = (f"Point-MAE {cfg.trans_dim} wide, {cfg.depth} blocks, {cfg.num_group} groups of {cfg.group_size}, "
               f"{args.npoints} points, batch {args.batch}, attention {args.attention[0]}, "
               f"{args.precision[0]}, {args.reps} timed steps per method after "
               f"{args.warmup} warm-up steps, methods alternating within each repetition.")
    mem_note = ("" if memory is None else
                f"Step memory: peak minus memory before the first step, in a fresh process per method "
                f"({args.memory_steps} steps; {next(iter(memory.values()))['kind']}): gradients, optimizer "
                f"state, activations and workspace. Peak: the whole process (framework + model + step).\n\n")
    header = getattr(args, "header", None) or machine_header(command_line(), f"Training step: {args.device.upper()}")
    return (header + f"- load average at the end: {load_average()}\n\n" + setting + "\n\n"
            + step_table(times, variants, memory) + "\n" + mem_note
            + ("" if inf_times is None else
               "## Inference latency, unmerged vs merged adapters\n\n" + inference_table(inf_times, diffs)))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.device, args.batch, args.memory_steps,
                                      args.model_opts, args.npoints, args.precision[0])))
        return 0
    text = run(args)
    print(text)
    out = Path(args.out) if args.out else RESULTS_DIR / f"train_step_{args.device}.md"
    if args.append and out.exists():
        text = out.read_text().rstrip("\n") + "\n\n#" + text  # its title one level down
    write_result(out, text)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
