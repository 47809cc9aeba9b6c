"""What a sweep reports: every run's numbers by protocol, their mean ± std per setting, the tables.

Protocols (engine/protocols.py; the labels of results.json's `protocols`, the summary and the tables):
`test @ best val epoch`, `test @ last epoch`, `best test epoch (public protocol)`. A run without a
validation split has no `test @ best val epoch`. Older results.json files without
`protocols` are read through their best epoch, selection split and metrics.csv.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from ..engine.logging import read_csv
from ..engine.protocols import BEST_TEST, BEST_VAL, LAST, PROTOCOLS  # noqa: F401  (re-exported)

PRIMARY = {"classification": "oa", "part_segmentation": "ins_miou"}
METRIC_NAMES = {"oa": "OA", "macc": "mAcc", "ins_miou": "instance mIoU", "cls_miou": "class mIoU", "acc": "point acc"}


def mean_std(values: Sequence[float]) -> tuple:
    """(mean, sample standard deviation; 0 for one value)."""
    if not values:
        raise ValueError("values: expected at least one number, got an empty sequence")
    return float(statistics.fmean(values)), (float(statistics.stdev(values)) if len(values) > 1 else 0.0)


def _last_row_protocol(folder: Path, keys: Sequence[str]) -> Optional[dict]:
    """Test metrics of the last epoch from metrics.csv when its val/ columns are on the test split."""
    rows = [r for r in read_csv(folder / "metrics.csv") if not math.isnan(r.get(f"val/{keys[0]}", math.nan))]
    if not rows:
        return None
    return {"epoch": int(rows[-1]["epoch"]), **{k: float(rows[-1][f"val/{k}"]) for k in keys if f"val/{k}" in rows[-1]}}


def protocols_of(folder: Path, results: Mapping) -> Dict[str, dict]:
    """{protocol label: {'epoch', metric: value}} of one finished run."""
    if results.get("protocols"):
        return {k: dict(v) for k, v in results["protocols"].items() if v}
    test = {k: v for k, v in results["test"].items() if k not in ("epoch", "split")}
    out = {}
    if results["selected_on"] == results["test_split"]:
        out[BEST_TEST] = {"epoch": results["best_epoch"], **test}
        last = _last_row_protocol(folder, list(test))
        if last:
            out[LAST] = last
    else:
        out[BEST_VAL] = {"epoch": results["best_epoch"], **test}
    return out


def read_run(folder: Path, run) -> dict:
    """The numbers of a finished run (folder with results.json); run: grid.Run."""
    folder = Path(folder)
    path = folder / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"run folder {folder} has no results.json (the run did not finish)")
    res = json.loads(path.read_text())
    try:
        wall = float(json.loads((folder / "sweep_run.json").read_text())["wall_s"])
    except (OSError, ValueError, KeyError):
        wall = float(res["train_time_s"])  # finished outside the sweep
    return {"name": run.name, "setting": run.setting, "method": run.method, "fold": run.fold, "seed": run.seed,
            "task": res["task"], "primary": PRIMARY.get(res["task"], "oa"), "protocols": protocols_of(folder, res),
            "trainable": int(res["parameters"]["trainable"]), "total": int(res["parameters"]["total"]),
            "train_time_s": float(res["train_time_s"]), "wall_s": wall, "folder": str(folder)}


def aggregate(runs: Sequence[dict], gflops: Mapping[str, float]) -> List[dict]:
    """One entry per setting: mean ± std over its runs of every protocol's metrics and of wall time."""
    settings: Dict[str, List[dict]] = {}
    for r in runs:
        settings.setdefault(r["setting"], []).append(r)
    out = []
    for setting, rs in settings.items():
        protocols = {}
        for label in PROTOCOLS:
            have = [r["protocols"][label] for r in rs if label in r["protocols"]]
            if len(have) != len(rs):
                continue  # a protocol is reported only when every run has it
            keys = [k for k in have[0] if k != "epoch"]
            protocols[label] = {k: {"mean": mean_std([h[k] for h in have])[0], "std": mean_std([h[k] for h in have])[1],
                                    "values": [h[k] for h in have]} for k in keys}
            protocols[label]["epoch"] = {"values": [h["epoch"] for h in have]}
        wall = mean_std([r["wall_s"] for r in rs])
        out.append({"setting": setting, "runs": len(rs), "seeds": sorted({r["seed"] for r in rs}),
                    "folds": sorted({r["fold"] for r in rs if r["fold"] is not None}), "primary": rs[0]["primary"],
                    "trainable": rs[0]["trainable"], "total": rs[0]["total"], "gflops": gflops.get(setting),
                    "protocols": protocols, "wall_s": {"mean": wall[0], "std": wall[1]}})
    return out


def _pm(stat: Mapping) -> str:
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table; floats are printed as given (format them before)."""
    rows = [list(map(str, r)) for r in rows]
    for r in rows:
        if len(r) != len(headers):
            raise ValueError(f"rows: every row needs {len(headers)} cells ({list(headers)}), got {r}")
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def settings_table(settings: Sequence[dict], label_of) -> str:
    present = [p for p in PROTOCOLS if any(p in s["protocols"] for s in settings)]
    metric = METRIC_NAMES.get(settings[0]["primary"], settings[0]["primary"]) if settings else "OA"
    headers = ["method", "runs", "trainable params", "GFLOPs"] + [f"{p}: {metric} (%)" for p in present]
    headers.append("wall time (s)")
    rows = []
    for s in settings:
        row = [label_of(s["setting"]), s["runs"], f"{s['trainable']:,}",
               "-" if s["gflops"] is None else f"{s['gflops']:.4g}"]
        row += [_pm(s["protocols"][p][s["primary"]]) if p in s["protocols"] else "-" for p in present]
        row.append(f"{s['wall_s']['mean']:.0f} ± {s['wall_s']['std']:.0f}")
        rows.append(row)
    return markdown_table(headers, rows)


def runs_table(runs: Sequence[dict], label_of) -> str:
    present = [p for p in PROTOCOLS if any(p in r["protocols"] for r in runs)]
    headers = ["run", "method"] + [f"{p} (epoch)" for p in present] + ["wall time (s)"]
    rows = []
    for r in runs:
        cells = []
        for p in present:
            v = r["protocols"].get(p)
            cells.append(f"{v[r['primary']]:.2f} ({v['epoch']})" if v else "-")
        rows.append([r["name"], label_of(r["setting"]), *cells, f"{r['wall_s']:.0f}"])
    return markdown_table(headers, rows)


def runs_csv(runs: Sequence[dict]) -> str:
    """One row per run: identity, parameters, wall time and every protocol's metrics."""
    columns = ["name", "setting", "method", "fold", "seed", "trainable", "total", "train_time_s", "wall_s"]
    extra: List[str] = []
    for r in runs:
        for p, values in r["protocols"].items():
            extra += [f"{p}/{k}" for k in values if f"{p}/{k}" not in extra]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns + extra, restval="")
    writer.writeheader()
    for r in runs:
        row = {c: ("" if r[c] is None else r[c]) for c in columns}
        row.update({f"{p}/{k}": v for p, values in r["protocols"].items() for k, v in values.items()})
        writer.writerow(row)
    return buf.getvalue()


def plot(settings: Sequence[dict], path: Path, label_of, title: str) -> Optional[Path]:
    """Accuracy per method (mean ± std), one marker per protocol, as PNG."""
    if not settings:
        return None
    plt = pyplot()
    present = [p for p in PROTOCOLS if any(p in s["protocols"] for s in settings)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(settings) + 2), 4.2), dpi=120)
    width = 0.8 / max(len(present), 1)
    for j, (p, marker) in enumerate(zip(present, "o^s")):
        xs, ys, es = [], [], []
        for i, s in enumerate(settings):
            if p in s["protocols"]:
                stat = s["protocols"][p][s["primary"]]
                xs.append(i + (j - (len(present) - 1) / 2) * width)
                ys.append(stat["mean"])
                es.append(stat["std"])
        ax.errorbar(xs, ys, yerr=es, fmt=marker, capsize=4, label=p)
    ax.set_xticks(range(len(settings)))
    ax.set_xticklabels([label_of(s["setting"]) for s in settings], rotation=15, fontsize=8)
    metric = METRIC_NAMES.get(settings[0]["primary"], settings[0]["primary"])
    ax.set_ylabel(f"test {metric} (%), mean ± std")
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    return save_figure(fig, path)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed); imported on first use,
    so reading and tabulating runs does not load matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Adds the legend, lays out, writes `fig` as PNG to `path` (its folder made) and closes it."""
    fig.axes[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    pyplot().close(fig)
    return path
