#!/usr/bin/env python
"""Method comparison on the demo data: full fine-tuning, linear probing, LoRA, CLoRA, CLoRA+CoTo,
DAPT, IDPT and PointGST.

    .venv/bin/python bench/method_study.py   # 2 cores: ~1 h at load 4-7; writes bench/results/method_study.{md,png}

1. Backbone: the demo's self-pre-trained Point-MAE (runs/demo/pretrain/pretrain.pth, written by
   tools/demo.py) when present, else pre-trained once with tools/pretrain.py --config
   configs/demo_pretrain.yaml into <out>/pretrain.
2. Every method fine-tunes that backbone on the demo ScanObjectNN PB_T50_RS task for the same number of
   epochs and the same recipe (configs/demo_clora.yaml; adapters from the shipped ScanObjectNN configs,
   the peer methods' size-dependent keys fitted to the demo model by the sweep's rule) over 3 seeds,
   each run a `tools/train.py` process (two at a time, one thread each), through `pointclora.sweep`
   (tools/sweep.py's library: finished runs are skipped, killed ones resumed; it also writes
   sweep.md/json/csv/png per task under <out>/runs/<task>/).
3. CoTo's claims, with and without CoTo: (a) pruning: accuracy when the adapters of every other block
   are switched off; (b) merging: a CLoRA adapter trained on PB_T50_RS and one trained on OBJ_ONLY are
   merged by averaging their weight updates, W = W0 + (dW_a + dW_b) / 2, and the merged backbone is
   evaluated on both tasks (each with its own head).
Accuracy is the test OA of the best epoch (the ScanObjectNN protocol selects on the test split) and of
the last epoch.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench.common` from a checkout

from bench.common import (REPO_ROOT, RESULTS_DIR, command_line, load_average, machine_header, markdown_table,
                          mean_std, write_result)
from pointclora import sweep  # noqa: E402
from pointclora.adapters import adapter_layers, group_adapters_by_block, merge_and_unload  # noqa: E402
from pointclora.config import load_config, save_config  # noqa: E402
from pointclora.engine import builders as B  # noqa: E402
from pointclora.engine.checkpoint import load_checkpoint, load_model_state  # noqa: E402
from pointclora.engine.distributed import DistInfo  # noqa: E402
from pointclora.engine.tasks import ClassificationTask  # noqa: E402
from pointclora.factory import build_model_with_adapters, splits  # noqa: E402
from pointclora.sweep import grid as sweep_grid  # noqa: E402
from pointclora.sweep.report import pyplot, save_figure  # noqa: E402

METHODS = sweep_grid.METHODS
LABELS = sweep_grid.LABELS
ADAPTER_CONFIGS = sweep_grid.ADAPTER_CONFIGS
BASE_CONFIG = "demo_clora.yaml"
PRETRAIN_CONFIG = "demo_pretrain.yaml"
DEMO_BACKBONE = REPO_ROOT / "runs" / "demo" / "pretrain" / "pretrain.pth"
MAIN_TASK, SECOND_TASK = "PB_T50_RS", "OBJ_ONLY"
COTO_METHODS = ("clora", "clora_coto")


# ------------------------------------------------------------------ configs
def adapter_section(method: str) -> Optional[dict]:
    """The `adapter:` section of `method` (None: full fine-tuning), as the sweep applies it."""
    return sweep_grid.adapter_section(method)


def task_opts(task: str, epochs: int, model_overrides: Optional[Mapping] = None,
              dataset_overrides: Optional[Mapping] = None) -> List[str]:
    """--opts of the demo recipe on ScanObjectNN variant `task` for `epochs` epochs (every method)."""

    warmup = min(int(load_config(BASE_CONFIG)["scheduler"].get("warmup_epochs", 0)), max(int(epochs) - 1, 0))
    opts = [f"dataset.variant={task}", f"train.epochs={int(epochs)}", f"scheduler.warmup_epochs={warmup}"]
    opts += [f"model.{k}={json.dumps(v)}" for k, v in (model_overrides or {}).items()]
    return opts + [f"dataset.{k}={json.dumps(v)}" for k, v in (dataset_overrides or {}).items()]


def run_config(method: str, task: str, epochs: int, model_overrides: Optional[Mapping] = None,
               dataset_overrides: Optional[Mapping] = None) -> dict:
    """The demo recipe with `method`'s adapters, on ScanObjectNN variant `task`, for `epochs` epochs."""
    base = sweep_grid.load_base(BASE_CONFIG, task_opts(task, epochs, model_overrides, dataset_overrides))
    return sweep_grid.run_config(base, sweep_grid.Run(method, None, 0))


def pretrain_config(epochs: Optional[int], model_overrides: Optional[Mapping] = None,
                    dataset_overrides: Optional[Mapping] = None) -> dict:

    cfg = load_config(PRETRAIN_CONFIG)
    cfg["model"].update(model_overrides or {})
    cfg["dataset"].update(dataset_overrides or {})
    if epochs is not None:
        cfg["train"]["epochs"] = int(epochs)
        cfg["scheduler"]["warmup_epochs"] = min(int(cfg["scheduler"].get("warmup_epochs", 0)), max(int(epochs) - 1, 0))
    return cfg


def write_config(cfg: Mapping, path: Path) -> Path:

    save_config(cfg, path)
    return path


# ------------------------------------------------------------------ running the tools
def tool_command(tool: str, config: Path, out: Path, seed: Optional[int] = None, ckpts: Optional[Path] = None) -> List[str]:
    """Arguments of tools/<tool>.py for one run on the CPU."""
    args = [str(REPO_ROOT / "tools" / f"{tool}.py"), "--config", str(config), "--output-dir", str(out), "--device", "cpu"]
    if seed is not None:
        args += ["--seed", str(seed)]
    if ckpts is not None:
        args += ["--ckpts", str(ckpts)]
    return args


def run_in_process(command: List[str], log: Path) -> float:
    """Runs tools/<x>.py's main(argv) in this process (tests), output to `log`; returns wall seconds."""
    import contextlib
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_bench_tool_{Path(command[0]).stem}", command[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        code = module.main(command[1:])
    if code:
        raise RuntimeError(f"run failed (exit {code}): python {' '.join(command)}; log {log}:\n{log.read_text()[-1500:]}")
    return time.perf_counter() - start


def run_tool(command: List[str], log: Path, in_process: bool, threads: int) -> float:
    """Runs `python <command>` (or, in_process, its main() here) with `threads` torch threads, output to
    `log`; returns wall seconds. A failing run raises RuntimeError naming its log."""
    if in_process:
        return run_in_process(command, log)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.run([sys.executable, *command], stdout=f, stderr=subprocess.STDOUT, env=env,
                              cwd=REPO_ROOT).returncode
    if code:
        raise RuntimeError(f"run failed (exit {code}): python {' '.join(command)}; log {log}:\n{log.read_text()[-1500:]}")
    return time.perf_counter() - start


def ensure_backbone(out: Path, epochs: Optional[int], model_overrides: Optional[Mapping], dataset_overrides,
                    threads: int, reuse_demo: bool = True, in_process: bool = False) -> tuple:
    """(path of the pre-trained backbone, where it came from). Pre-trains once when none exists.

    The demo's checkpoint is copied into <out>/pretrain first, so a later demo run cannot swap it mid-study.
    """
    import shutil

    run_dir = out / "pretrain"
    path = run_dir / "pretrain.pth"
    if path.is_file():
        return path, "reused from an earlier run of this study" + _pretrain_summary(run_dir)
    if reuse_demo and DEMO_BACKBONE.is_file() and not model_overrides:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("results.json", "config.yaml"):
            if (DEMO_BACKBONE.parent / name).is_file():
                shutil.copy2(DEMO_BACKBONE.parent / name, run_dir / name)
        shutil.copy2(DEMO_BACKBONE, path)
        return path, f"copied from {DEMO_BACKBONE.relative_to(REPO_ROOT)} (tools/demo.py)" + _pretrain_summary(run_dir)
    cfg_path = write_config(pretrain_config(epochs, model_overrides, dataset_overrides), out / "configs" / "pretrain.yaml")
    wall = run_tool(tool_command("pretrain", cfg_path, run_dir), run_dir.with_suffix(".log"), in_process, threads)
    return path, f"pre-trained by this study ({wall:.0f} s)" + _pretrain_summary(run_dir)


def _pretrain_summary(run_dir: Path) -> str:
    """', 20 epochs, Chamfer loss 0.97 -> 0.0095' from a pre-training run's results.json ('' if absent)."""
    try:
        res = json.loads((run_dir / "results.json").read_text())
        return f", {res['epochs']} epochs, Chamfer-L2 loss {res['first_loss']:.3g} -> {res['final_loss']:.3g}"
    except (OSError, KeyError, ValueError, TypeError):
        return ""


# ------------------------------------------------------------------ results of one run
def run_dir(out: Path, task: str, method: str, seed: int) -> Path:
    """<out>/runs/<task>/<method>/seed<s>: the folder the sweep of `task` gives the run."""
    return sweep_grid.Run(method, None, seed).folder(out / "runs" / task)


def read_run(path: Path) -> dict:
    """{'best_oa', 'last_oa', 'best_epoch', 'trainable', 'total', 'train_time_s'} of a finished run
    (the sweep's record: best test epoch and last epoch, the ScanObjectNN protocol's two numbers)."""
    path = Path(path)
    rec = sweep.report.read_run(path, sweep_grid.Run(path.parent.name, None, int(path.name.removeprefix("seed"))))
    best, last = rec["protocols"][sweep.BEST_TEST], rec["protocols"][sweep.LAST]
    return {"best_oa": float(best["oa"]), "last_oa": float(last["oa"]), "best_epoch": best["epoch"],
            "trainable": rec["trainable"], "total": rec["total"], "train_time_s": rec["train_time_s"]}


def load_run_model(path: Path) -> tuple:
    """(model in eval mode with its best weights, its resolved config) of a finished run."""

    cfg = load_config(path / "config.yaml")
    model, _ = build_model_with_adapters(cfg, None)
    ckpt = path / "ckpt-best.pth"
    load_model_state(model, load_checkpoint(ckpt)["model"], ckpt)
    return model.eval(), cfg


_TEST_SETS: Dict[str, object] = {}


def test_accuracy(model: torch.nn.Module, cfg: Mapping) -> float:
    """Overall accuracy (%) of `model` on the test split of cfg's dataset, as the trainer computes it."""

    info = DistInfo()
    key = json.dumps(cfg["dataset"], sort_keys=True, default=str)
    if key not in _TEST_SETS:
        _, _, test_split = splits(cfg["dataset"])
        _TEST_SETS[key] = B.build_datasets(cfg["dataset"], info, [test_split])[test_split]
    task = ClassificationTask(int(cfg["model"]["cls_dim"]))
    meter = task.new_meter(info.device)
    model.eval()
    with torch.no_grad():
        for batch in B.eval_loader(_TEST_SETS[key], cfg["train"], info):
            task.update(meter, task.forward(model, batch), batch)
    return float(meter.compute()["oa"])


# ------------------------------------------------------------------ CoTo's claims
def prune_every_other_block(model: torch.nn.Module, keep_even: bool = True) -> List[str]:
    """Switches off (disabled=True) the adapters of blocks 1, 3, 5, ...; returns the pruned block names."""

    pruned = []
    for i, (name, layers) in enumerate(group_adapters_by_block(model).items()):
        if (i % 2 == 1) == keep_even:
            for layer in layers:
                layer.disabled = True
            pruned.append(name)
    if not pruned:
        raise ValueError("model: no adapter block to prune (does it have adapters in >= 2 blocks?)")
    return pruned


def merged_linear_weights(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """{name of adapted Linear: its merged weight W0 + dW (out, in)} without touching the model."""

    return {name: layer.merged_weight().detach().clone() for name, layer in adapter_layers(model)}


def merge_two(model_a: torch.nn.Module, model_b: torch.nn.Module, keep_head_of: torch.nn.Module) -> torch.nn.Module:
    """A plain model whose adapted layers hold W0 + (dW_a + dW_b) / 2 and whose head, class token and
    every other tensor come from `keep_head_of` (one of the two). The backbone W0 must be shared."""

    wa, wb = merged_linear_weights(model_a), merged_linear_weights(model_b)
    if set(wa) != set(wb):
        raise ValueError(f"models: the two adapters sit on different layers ({sorted(set(wa) ^ set(wb))[:4]})")
    merged = merge_and_unload(copy.deepcopy(keep_head_of))
    with torch.no_grad():
        for name in wa:
            # both merged weights are W0 + dW_x (exactly linear in dW_x, also for CLoRA's input placement)
            merged.get_submodule(name).weight.copy_((wa[name].double() + wb[name].double()).div(2).float())
    return merged.eval()


def pruning_study(out: Path, seeds: Sequence[int], methods=COTO_METHODS) -> Dict[str, dict]:
    """{method: {'full': [oa per seed], 'pruned': [...]}} on the main task."""
    res = {}
    for method in methods:
        full, pruned = [], []
        for seed in seeds:
            model, cfg = load_run_model(run_dir(out, MAIN_TASK, method, seed))
            full.append(test_accuracy(model, cfg))
            prune_every_other_block(model)
            pruned.append(test_accuracy(model, cfg))
        res[method] = {"full": full, "pruned": pruned}
    return res


def merging_study(out: Path, seeds: Sequence[int], methods=COTO_METHODS) -> Dict[str, dict]:
    """{method: {task: {'alone': [oa per seed], 'merged': [...]}}} for both tasks."""
    res = {}
    for method in methods:
        res[method] = {MAIN_TASK: {"alone": [], "merged": []}, SECOND_TASK: {"alone": [], "merged": []}}
        for seed in seeds:
            runs = {t: load_run_model(run_dir(out, t, method, seed)) for t in (MAIN_TASK, SECOND_TASK)}
            models = [runs[MAIN_TASK][0], runs[SECOND_TASK][0]]
            for task, (model, cfg) in runs.items():
                res[method][task]["alone"].append(test_accuracy(model, cfg))
                res[method][task]["merged"].append(test_accuracy(merge_two(*models, keep_head_of=model), cfg))
    return res


# ------------------------------------------------------------------ the study
def plan_tasks(methods: Sequence[str], merging: bool) -> Dict[str, List[str]]:
    """{task: methods to train}: every method on the main task, CoTo's pair on the second."""
    tasks = {MAIN_TASK: list(methods)}
    if merging:
        tasks[SECOND_TASK] = [m for m in COTO_METHODS if m in methods]
    return tasks


def train_all(args, backbone: Path, tasks: Mapping[str, Sequence[str]]) -> Dict[str, dict]:
    """One sweep per task (seeds x methods, finished runs skipped); returns {task: sweep summary}.
    A failed run raises RuntimeError naming its log."""
    import shutil

    out = {}
    for task, methods in tasks.items():
        folder = args.out / "runs" / task
        if args.fresh:
            for method in methods:
                for seed in args.seeds:
                    shutil.rmtree(run_dir(args.out, task, method, seed), ignore_errors=True)
        opts = task_opts(task, args.epochs, args.model_opts, args.dataset_opts)
        out[task] = sweep.run_sweep(BASE_CONFIG, folder, seeds=args.seeds, methods=methods, opts=opts, device="cpu",
                                    ckpts=str(backbone), parallel=max(args.parallel, 1), threads=args.threads,
                                    in_process=args.parallel == 0, title=f"Method study: demo ScanObjectNN {task}",
                                    command=command_line())
        if out[task]["failed"]:
            name = next(iter(out[task]["failed"]))
            log = folder / f"{name}.log"
            raise RuntimeError(f"run {task} {name} failed; log {log}:\n{log.read_text()[-1500:]}")
    return out


def summarise(out: Path, seeds: Sequence[int], methods: Sequence[str]) -> Dict[str, dict]:
    """{method: {'runs': [read_run per seed], 'trainable', 'best', 'last', 'time'}} on the main task."""
    table = {}
    for method in methods:
        runs = [read_run(run_dir(out, MAIN_TASK, method, s)) for s in seeds]
        table[method] = {"runs": runs, "trainable": runs[0]["trainable"], "total": runs[0]["total"],
                         "best": mean_std([r["best_oa"] for r in runs]), "last": mean_std([r["last_oa"] for r in runs]),
                         "time": mean_std([r["train_time_s"] for r in runs])}
    return table


def plot(table: Mapping[str, dict], path: Path) -> Path:
    """Accuracy (best and last epoch, mean +- std over seeds) against trainable parameters, log x."""
    fig, ax = pyplot().subplots(figsize=(6.4, 4.2), dpi=120)
    for i, (method, row) in enumerate(table.items()):
        x = row["trainable"]
        ax.errorbar([x], [row["best"][0]], yerr=[row["best"][1]], fmt="o", capsize=4, color=f"C{i}", label=LABELS[method])
        ax.errorbar([x], [row["last"][0]], yerr=[row["last"][1]], fmt="x", capsize=4, color=f"C{i}", alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("test OA (%)  o best epoch, x last epoch")
    ax.set_title("Demo ScanObjectNN PB_T50_RS: accuracy vs trainable parameters", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path)


def _pm(values) -> str:
    mean, std = mean_std(values) if not isinstance(values, tuple) else values
    return f"{mean:.1f} ± {std:.1f}"


def main_table(table: Mapping[str, dict]) -> str:
    rows = []
    for method, row in table.items():
        per_seed = ", ".join(f"{r['best_oa']:.1f}" for r in row["runs"])
        rows.append([LABELS[method], f"{row['trainable']:,}", f"{100 * row['trainable'] / row['total']:.1f} %",
                     _pm(row["best"]), per_seed, _pm(row["last"]), f"{row['time'][0]:.0f}"])
    return markdown_table(["method", "trainable params", "of total", "test OA best epoch (%)", "per seed",
                           "test OA last epoch (%)", "train time (s)"], rows)


def pruning_table(res: Mapping[str, dict]) -> str:
    rows = [[LABELS[m], _pm(r["full"]), _pm(r["pruned"]),
             _pm([p - f for p, f in zip(r["pruned"], r["full"])])] for m, r in res.items()]
    return markdown_table(["method", "all adapters (%)", "every other block pruned (%)", "change (points)"], rows)


def merging_table(res: Mapping[str, dict]) -> str:
    rows = []
    for method, tasks in res.items():
        for task, r in tasks.items():
            rows.append([LABELS[method], task, _pm(r["alone"]), _pm(r["merged"]),
                         _pm([m - a for m, a in zip(r["merged"], r["alone"])])])
    return markdown_table(["method", "evaluated on", "own adapter (%)", "merged adapter (%)", "change (points)"], rows)


def report(args, header: str, backbone_note: str, table, pruning, merging, wall_s: float,
           png: Optional[Path]) -> str:
    """The result file: `header` (machine_header at the start of the study) + the end's load, the
    setting, the tables."""
    cfg = run_config("clora", MAIN_TASK, args.epochs, args.model_opts, args.dataset_opts)
    m, d, t = cfg["model"], cfg["dataset"], cfg["train"]
    base = sweep_grid.load_base(BASE_CONFIG, task_opts(MAIN_TASK, args.epochs, args.model_opts, args.dataset_opts))
    fitted = sweep_grid.fit_notes(base, args.methods)
    text = header + f"- load average at the end: {load_average()}\n"
    text += (f"\nSetting: Point-MAE {m['trans_dim']} wide, {m['depth']} blocks, {m['num_group']} groups of "
             f"{m['group_size']}, {d['npoints']} points; demo data (7 classes, 280 train / 140 test shapes); "
             f"{args.epochs} epochs, batch {t['batch_size']}, AdamW lr {cfg['optimizer']['lr']} with "
             f"{cfg['scheduler']['warmup_epochs']} warm-up epochs for every method (configs/{BASE_CONFIG}); "
             f"seeds {list(args.seeds)}; backbone {backbone_note}. Each run is one tools/train.py process, "
             f"{args.parallel} at a time with {args.threads} thread(s) each; train time is the run's "
             f"fit loop (training + per-epoch test evaluation). Whole study: {wall_s / 60:.1f} min.\n\n")
    if fitted:
        text += "Peer sections fitted to the demo model (tools/sweep.py's rule): " + "; ".join(fitted) + ".\n\n"
    text += "## Accuracy, trainable parameters, time (PB_T50_RS)\n\n" + main_table(table)
    if png is not None:
        text += f"\n![accuracy vs trainable parameters]({png.name})\n"
    if pruning:
        text += ("\n## CoTo claim 1: pruning every other block's adapters (PB_T50_RS, best-epoch weights)\n\n"
                 + pruning_table(pruning))
    if merging:
        text += (f"\n## CoTo claim 2: merging a {MAIN_TASK} and an {SECOND_TASK} adapter "
                 f"(W0 + (dW_a + dW_b) / 2, each task keeps its own head)\n\n" + merging_table(merging))
    return text


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs of every run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--pretrain-epochs", type=int, default=None, help="default: configs/demo_pretrain.yaml's")
    p.add_argument("--no-demo-backbone", action="store_true", help="pre-train here even if the demo's exists")
    p.add_argument("--parallel", type=int, default=2, help="training processes at a time (0: in this process)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench" / "method_study")
    p.add_argument("--results", type=Path, default=RESULTS_DIR / "method_study.md")
    p.add_argument("--no-coto-studies", action="store_true", help="skip the pruning and merging studies")
    p.add_argument("--fresh", action="store_true", help="retrain runs that already finished")
    p.add_argument("--model-opts", default="{}", help="JSON of model overrides (tests: tiny widths)")
    p.add_argument("--dataset-opts", default="{}", help="JSON of dataset overrides (tests: fewer points)")
    args = p.parse_args(argv)
    for name in ("model_opts", "dataset_opts"):
        try:
            setattr(args, name, json.loads(getattr(args, name)))
        except json.JSONDecodeError as err:
            p.error(f"--{name.replace('_', '-')}: expected a JSON object ({err})")
    if args.parallel < 0 or args.threads < 1:
        p.error(f"--parallel/--threads: expected >= 0 / >= 1, got {args.parallel}/{args.threads}")
    if args.epochs < 1:
        p.error(f"--epochs: expected >= 1, got {args.epochs}")
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds: expected distinct seeds, got {args.seeds}")
    args.out = args.out.resolve()
    return args


def run(args) -> str:
    start = time.perf_counter()
    header = machine_header(command_line(), "Method study: demo ScanObjectNN")
    backbone, note = ensure_backbone(args.out, args.pretrain_epochs, args.model_opts, args.dataset_opts,
                                     max(args.threads * args.parallel, 1), not args.no_demo_backbone,
                                     in_process=args.parallel == 0)
    coto = not args.no_coto_studies and all(m in args.methods for m in COTO_METHODS)
    train_all(args, backbone, plan_tasks(args.methods, coto))
    table = summarise(args.out, args.seeds, args.methods)
    pruning = pruning_study(args.out, args.seeds) if coto else None
    merging = merging_study(args.out, args.seeds) if coto else None
    png = plot(table, args.results.with_suffix(".png"))
    return report(args, header, note, table, pruning, merging, time.perf_counter() - start, png)


def main(argv=None) -> int:
    args = parse_args(argv)
    text = run(args)
    write_result(args.results, text)
    print(text)
    print(f"written {args.results} and {args.results.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
