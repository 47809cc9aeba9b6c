"""Run records: a tqdm bar per epoch, a CSV and TensorBoard log per epoch, a PNG of the curves.

Only rank 0 writes (pass enabled=False elsewhere). The CSV is rewritten whole after each
epoch from the rows kept in memory. The rows also travel in every checkpoint (key 'log'), so a
resumed run rebuilds the CSV from the checkpoint it continues: a kill between the checkpoint
and the CSV write loses no row, and the resumed CSV equals an uninterrupted run's.
TensorBoard is optional: without the `tensorboard` package, tb/ is skipped with one line.
"""
from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from typing import Iterable, Mapping

from tqdm import tqdm

from ..io import atomic_path
from .faults import writing


def progress(loader: Iterable, epoch: int, epochs: int, enabled: bool = True) -> tqdm:
    """tqdm bar for one epoch (`disable` on non-main ranks); the loop sets loss and throughput."""
    return tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not enabled, dynamic_ncols=True,
                leave=False, mininterval=1.0)


class Throughput:
    """Samples per second since construction or the last `reset`."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.start, self.samples = time.perf_counter(), 0

    def add(self, n: int) -> None:
        self.samples += n

    @property
    def rate(self) -> float:
        return self.samples / max(time.perf_counter() - self.start, 1e-9)


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a metrics CSV with numeric cells converted to float (empty -> NaN)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: _num(v) for k, v in row.items()} for row in rows]


def _num(text: str):
    if text == "":
        return math.nan
    for kind in (int, float):  # an epoch stays an int when a resumed run rewrites the CSV
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _summary_writer(log_dir: Path, purge_step: int):
    """TensorBoard SummaryWriter, or None (one line saying so) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("note: tensorboard is not installed, so no TensorBoard log (tb/) is written; "
              "metrics.csv and curves.png are (pip install tensorboard)", flush=True)
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


class RunLogger:
    """Per-epoch metrics to `<dir>/metrics.csv` and TensorBoard under `<dir>/tb`."""

    def __init__(self, output_dir: str | os.PathLike, enabled: bool = True, start_epoch: int = 0,
                 rows: list[dict] | None = None):
        """rows: the rows stored in the checkpoint a run resumes from (they replace the CSV's)."""
        self.dir = Path(output_dir)
        self.enabled = enabled
        self.csv_path = self.dir / "metrics.csv"
        self.rows: list[dict] = []
        self.writer = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if rows is not None:  # the checkpoint knows every finished epoch's row
            self.rows = [dict(r) for r in rows]
            self._write_csv()
        else:  # a checkpoint without rows: keep the CSV's rows up to it, drop any logged after it
            self.rows = [r for r in read_csv(self.csv_path) if r.get("epoch", math.inf) <= start_epoch]
        self.writer = _summary_writer(self.dir / "tb", start_epoch + 1)

    @staticmethod
    def make_row(epoch: int, values: Mapping[str, float]) -> dict:
        return {"epoch": int(epoch), **values}

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        """epoch: 1-based number of the finished epoch; values: e.g. train/loss, val/oa, lr."""
        if not self.enabled:
            return
        self.rows.append(self.make_row(epoch, values))
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not math.isnan(value):
                    self.writer.add_scalar(key, value, epoch)
            self.writer.flush()
        self._write_csv()

    def rows_with(self, epoch: int, values: Mapping[str, float]) -> list[dict]:
        """The rows after logging epoch `epoch` (for the checkpoint written before the CSV)."""
        return [dict(r) for r in self.rows] + [self.make_row(epoch, values)]

    def _write_csv(self) -> None:
        write_rows_csv(self.csv_path, self.rows)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def write_rows_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """Writes `rows` (one dict per epoch) as a CSV whose columns are every key seen, atomically."""
    csv_path = Path(path)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with writing(csv_path, "metrics file"), atomic_path(csv_path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})


def plot_curves(rows: list[dict], path: str | os.PathLike) -> Path | None:
    """Writes a PNG with one panel per group (loss, metrics, lr, CoTo active fraction)."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[-1] if k != "epoch" and isinstance(rows[-1][k], (int, float))]
    panels = {
        "loss": [k for k in keys if k.endswith("loss")],
        "metric (%)": [k for k in keys if k.startswith(("val/", "train/", "test/")) and not k.endswith("loss")],
        "learning rate": [k for k in keys if k == "lr"],
        "CoTo active fraction": [k for k in keys if k.startswith("coto")],
    }
    panels = {name: ks for name, ks in panels.items() if ks}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (name, ks) in zip(axes[0], panels.items()):
        for k in ks:
            pts = [(r["epoch"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and not math.isnan(r[k])]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=2, label=k)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    try:
        with writing(path, "plot"), atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
