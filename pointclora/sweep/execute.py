"""Running the grid: one tools/train.py per run, resumable.

A run whose folder holds results.json is finished and skipped; one with ckpt-last.pth but no
results.json was killed and continues with --resume; the others start fresh. Runs go one after
the other; when several GPUs are visible, one run per GPU at a time (each process sees only its
GPU through CUDA_VISIBLE_DEVICES). Each run's wall seconds add up in <run>/sweep_run.json over
the invocations that finished it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_TOOL = REPO_ROOT / "tools" / "train.py"
WALL_FILE = "sweep_run.json"


def run_state(folder: Path) -> str:
    """'done' (results.json), 'partial' (ckpt-last.pth only) or 'new'."""
    if (folder / "results.json").is_file():
        return "done"
    if (folder / "ckpt-last.pth").exists():
        return "partial"
    return "new"


@dataclass
class Job:
    """One tools/train.py invocation: its argv (after the script) and where it logs."""

    name: str
    folder: Path
    argv: List[str]
    resume: bool
    log: Path = field(init=False)

    def __post_init__(self):
        self.log = self.folder.parent / f"{self.folder.name}.log"


def make_job(name: str, config: Path, folder: Path, device: Optional[str], ckpts: Optional[str]) -> Job:
    resume = run_state(folder) == "partial"
    argv = ["--config", str(config), "--output-dir", str(folder)]
    argv += ["--device", device] if device else []
    argv += ["--ckpts", str(ckpts)] if ckpts and not resume else []
    argv += ["--resume"] if resume else []
    return Job(name, folder, argv, resume)


def visible_gpus() -> List[str]:
    """Ids to put in CUDA_VISIBLE_DEVICES, one per visible GPU ([] without CUDA)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if len(listed) >= count > 0 else [str(i) for i in range(count)]


def worker_envs(parallel: int = 1, threads: Optional[int] = None) -> List[Dict[str, str]]:
    """Environment overrides of each worker slot: one per GPU when more than one is visible, else
    `parallel` CPU slots (`threads` torch threads each when given)."""
    gpus = visible_gpus()
    if len(gpus) > 1:
        return [{"CUDA_VISIBLE_DEVICES": g} for g in gpus]
    extra = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}
    return [dict(extra) for _ in range(max(1, parallel))]


def _add_wall(folder: Path, seconds: float) -> None:
    path = folder / WALL_FILE
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {"wall_s": 0.0, "invocations": 0}
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"wall_s": old["wall_s"] + seconds, "invocations": old["invocations"] + 1}))


def _load_train_tool():
    spec = importlib.util.spec_from_file_location("_sweep_train_tool", TRAIN_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(job: Job) -> int:
    """tools/train.py's main(argv) in this process, output to the job's log (tests, --in-process)."""
    tool = _load_train_tool()
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        return int(tool.main(job.argv) or 0)


def execute(jobs: Sequence[Job], envs: Sequence[Dict[str, str]], in_process: bool = False,
            log: Callable[[str], None] = print) -> Dict[str, int]:
    """Runs the jobs, len(envs) at a time; returns {job name: exit status} (0: finished)."""
    status: Dict[str, int] = {}
    if in_process:
        for job in jobs:
            status[job.name] = _timed(job, lambda: run_in_process(job), log)
        return status
    pending, running = list(jobs), {}
    free = list(range(len(envs)))
    while pending or running:
        while pending and free:
            job, slot = pending.pop(0), free.pop(0)
            running[slot] = (job, *_start(job, envs[slot], log), time.perf_counter())
        time.sleep(0.2)
        for slot, (job, proc, out, start) in list(running.items()):
            if proc.poll() is None:
                continue
            out.close()
            status[job.name] = _finished(job, proc.returncode, time.perf_counter() - start, log)
            del running[slot]
            free.append(slot)
    return status


def _start(job: Job, env: Dict[str, str], log: Callable[[str], None]):
    """returns (process, its open log file)."""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    what = "resuming" if job.resume else "starting"
    log(f"{what} {job.name}" + (f" (CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']})" if "CUDA_VISIBLE_DEVICES"
                                in env else "") + f"; log {job.log}")
    out = open(job.log, "a")
    proc = subprocess.Popen([sys.executable, str(TRAIN_TOOL), *job.argv], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, **env}, cwd=REPO_ROOT)
    return proc, out


def _timed(job: Job, fn: Callable[[], int], log: Callable[[str], None]) -> int:
    log(f"{'resuming' if job.resume else 'starting'} {job.name}; log {job.log}")
    start = time.perf_counter()
    try:
        code = fn()
    except SystemExit as err:  # argparse inside the tool
        code = int(err.code or 0)
    return _finished(job, code, time.perf_counter() - start, log)


def _finished(job: Job, code: int, seconds: float, log: Callable[[str], None]) -> int:
    if code == 0 and run_state(job.folder) == "done":
        _add_wall(job.folder, seconds)
        log(f"finished {job.name} in {seconds:.0f} s")
        return 0
    code = code or 1  # exit 0 without results.json (--max-epochs-this-run) is not finished
    tail = job.log.read_text()[-800:] if job.log.is_file() else ""
    last = [ln for ln in tail.splitlines() if ln.strip()][-1:] or ["(no output)"]
    log(f"FAILED {job.name} (exit {code}): {last[0]}; log {job.log}")
    return code
