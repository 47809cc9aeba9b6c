"""Faults of a run and their one-line reports: interrupts, full disks, stale temporary files.

Policy (README, "Reliability"):
- Ctrl-C: `interrupted after epoch N; continue with --resume`, exit status 130. Checkpoints are
  written atomically after each epoch, so epoch N is the last one `--resume` continues from.
- A write that fails (full disk, read-only folder): `could not write <file>: <reason>; ...`
  saying that the previous version of that file is intact, exit status 1.
- Temporary files of an earlier run that was killed mid-write are removed at start.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

INTERRUPT_STATUS = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
WRITE_ERROR_STATUS = 1


class RunInterrupted(Exception):
    """Ctrl-C during training; `epoch` epochs are finished and checkpointed."""

    def __init__(self, epoch: int):
        super().__init__(f"interrupted after epoch {epoch}; continue with --resume")
        self.epoch = epoch


class WriteError(Exception):
    """An output file could not be written; the message names it and what is left intact."""


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str = "file"):
    """Turns the OSError / RuntimeError of a failed write of `path` into a WriteError naming it.

    torch.save reports a full disk as RuntimeError('[enforce fail at inline_container.cc] ...
    file write failed'), without the errno: that case says 'write failed (disk full?)'.
    Writes go through a temporary file and os.replace, so the previous `path` is untouched."""
    path = Path(path)
    existed = path.exists()
    try:
        yield
    except (OSError, RuntimeError) as err:
        if isinstance(err, OSError) and err.strerror:
            reason = err.strerror
        elif isinstance(err, OSError):
            reason = str(err) or type(err).__name__
        elif "write" in str(err).lower():
            reason = "write failed (disk full?)"
        else:
            raise
        kept = f"the previous {what} '{path.name}' is intact" if existed else "no partial file is left"
        raise WriteError(f"could not write '{path}': {reason}; {kept}") from err


def stale_temp_files(out: Path) -> list[Path]:
    """Temporary files our atomic writers leave when killed mid-write: `.<name>.<random>.tmp`
    (checkpoints, pretrain.pth, dataset caches) and `metrics.csv.tmp`."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.is_file() and (
        (p.name.startswith(".") and p.name.endswith(".tmp")) or p.name == "metrics.csv.tmp"))


def clean_stale_temp_files(out: Path) -> list[Path]:
    """Removes the stale temporary files of `out` (rank 0 only, before training); returns them."""
    removed = []
    for path in stale_temp_files(out):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    if removed:
        print(f"removed {len(removed)} temporary file(s) left by an interrupted run: "
              + ", ".join(p.name for p in removed), flush=True)
    return removed


def check_output_dir(out: Path) -> None:
    """--output-dir / output_dir must be a folder (or not exist yet); FileExistsError otherwise."""
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                raise FileExistsError(f"--output-dir / output_dir: '{parent}' is a file, not a folder"
                                      + ("" if parent == out else f" (needed for '{out}')"))
            return
