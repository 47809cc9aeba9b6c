"""Sweeps: seeds x methods x folds of one config, run by tools/train.py, reported as mean ± std.

    from pointclora.sweep import run_sweep
    summary = run_sweep("demo_clora.yaml", out="runs/sweep", seeds=[0, 1], methods=["full", "clora"])

writes <out>/sweep.md, sweep.json, sweep.csv and sweep.png (accuracy per method with error bars);
a re-run skips finished runs and resumes killed ones (see execute.py). tools/sweep.py is the CLI.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Sequence

import torch

from ..config import load_config, save_config
from ..profiler.summary import profile_config
from . import execute, grid, report
from .grid import METHODS, Run, parse_indices
from .report import BEST_TEST, BEST_VAL, LAST, PROTOCOLS

__all__ = ["run_sweep", "METHODS", "PROTOCOLS", "BEST_VAL", "LAST", "BEST_TEST", "Run", "parse_indices", "grid",
           "execute", "report"]


def gflops_of(cfg: dict) -> Optional[float]:
    """Inference GFLOPs per sample of the model a config builds (pointclora.profiler, 2 x MACs)."""
    return profile_config(cfg, "sweep").flops / 1e9


def _header(title: str, command: str) -> str:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=execute.REPO_ROOT, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = (git("rev-parse", "--short", "HEAD") or "unknown") + (" (+ uncommitted changes)" if git(
        "status", "--porcelain", "--untracked-files=no") else "")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return "\n".join([
        f"# {title}", "", f"- command: `{command}`", f"- commit: {commit}",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, GPU: {gpu}; "
        f"torch {torch.__version__}, Python {platform.python_version()}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- load average when the report was written: {load}", "",
    ]) + "\n"


def run_sweep(config: str, out: str | os.PathLike, seeds: Sequence[int] = (0,), methods: Optional[Sequence[str]] = None,
              folds: Optional[Sequence[int]] = None, opts: Iterable[str] = (), device: Optional[str] = None,
              ckpts: Optional[str] = None, parallel: int = 1, threads: Optional[int] = None,
              in_process: bool = False, title: Optional[str] = None, command: Optional[str] = None,
              label_of: Callable[[str], str] = grid.method_label, log: Callable[[str], None] = print) -> dict:
    """Trains every unfinished run of the grid, then writes the reports under `out`.

    returns {'settings': [...], 'runs': [...], 'failed': {name: exit status}, 'files': {...}}.
    Bad flags or config raise ValueError / ConfigError / FileNotFoundError before any run starts.
    """
    out = Path(out).expanduser().resolve()
    base = grid.load_base(config, opts)
    grid.check_grid(base, list(seeds), methods, folds)
    runs = grid.plan(list(seeds), methods, folds)
    cfgs = {run.name: grid.run_config(base, run) for run in runs}
    fitted = grid.fit_notes(base, methods)
    for note in fitted:
        log(note)
    grid.check_builds({run.setting: cfgs[run.name] for run in reversed(runs)})
    jobs = []
    for run in runs:
        folder = run.folder(out)
        state = execute.run_state(folder)
        if state == "done":
            log(f"skipping {run.name}: finished ({folder / 'results.json'})")
            _warn_changed(folder, cfgs[run.name], run.name, log)
            continue
        path = out / "configs" / f"{run.name.replace('/', '_')}.yaml"
        save_config(cfgs[run.name], path)
        jobs.append(execute.make_job(run.name, path, folder, device, ckpts))
    failed = {}
    if jobs:
        envs = execute.worker_envs(parallel, threads)
        status = execute.execute(jobs, envs, in_process=in_process, log=log)
        failed = {k: v for k, v in status.items() if v}
    records = [report.read_run(r.folder(out), r) for r in runs if execute.run_state(r.folder(out)) == "done"]
    gflops = {}
    for run in runs:
        if run.setting not in gflops:
            try:
                gflops[run.setting] = gflops_of(cfgs[run.name])
            except (ValueError, RuntimeError, KeyError) as err:  # a report column only: say so, go on
                log(f"warning: GFLOPs of {run.setting} not counted ({err})")
                gflops[run.setting] = None
    settings = report.aggregate(records, gflops)
    if label_of is grid.method_label and methods is None:
        adapter = (base.get("adapter") or {}).get("method")
        own = f"{adapter} (as configured)" if adapter else "full fine-tuning (as configured)"
        label_of = lambda setting: own if setting == grid.CONFIG_METHOD else grid.method_label(setting)  # noqa: E731
    command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    return write_reports(out, settings, records, failed, dict(config=str(config), opts=list(opts), seeds=list(seeds),
                         methods=list(methods) if methods else None, folds=list(folds) if folds is not None else None),
                         title or f"Sweep of {Path(config).name}", command, label_of, fitted)


def _warn_changed(folder: Path, cfg: dict, name: str, log: Callable[[str], None]) -> None:
    """A finished run is kept as it is; say so when the sweep would now train it differently."""
    try:
        diff = grid.config_diff(load_config(folder / "config.yaml"), cfg)
    except (OSError, ValueError):
        return
    if diff:
        log(f"warning: {name} finished with another config ({'; '.join(diff[:4])}); delete {folder} to retrain it")


def write_reports(out: Path, settings, records, failed, grid_info: dict, title: str, command: str,
                  label_of, fitted: Sequence[str] = ()) -> dict:
    files = {"md": out / "sweep.md", "json": out / "sweep.json", "csv": out / "sweep.csv", "png": out / "sweep.png"}
    out.mkdir(parents=True, exist_ok=True)
    png = report.plot(settings, files["png"], label_of, title)
    axes = ", ".join(f"{k} {v}" for k, v in grid_info.items() if v not in (None, []))
    text = _header(title, command)
    text += (f"Grid: {axes}. Each number is the mean ± sample standard deviation over the runs of a setting "
             f"(seeds x folds); GFLOPs: inference forward per sample (pointclora.profiler); wall time: the "
             f"tools/train.py process of each run.\n\n")
    if fitted:
        text += "Adapter keys fitted to the model's size: " + "; ".join(fitted) + ".\n\n"
    text += report.settings_table(settings, label_of) if settings else "No finished runs.\n"
    if png is not None:
        text += f"\n![accuracy per method]({png.name})\n"
    if records:
        text += "\n## Runs\n\n" + report.runs_table(records, label_of)
    if failed:
        text += "\n## Failed runs\n\n" + "".join(f"- {k}: exit {v} (log {out / k}.log)\n" for k, v in failed.items())
    files["md"].write_text(text)
    summary = {"grid": grid_info, "fitted": list(fitted), "protocols": list(PROTOCOLS), "settings": settings,
               "runs": records, "failed": failed, "files": {k: str(v) for k, v in files.items() if k != "png" or png}}
    files["json"].write_text(json.dumps(summary, indent=2))
    files["csv"].write_text(report.runs_csv(records))
    summary["text"] = text
    return summary
