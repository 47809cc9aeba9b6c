"""The engine's policy for a malformed data file (`dataset.on_bad_file`).

- `error` (default): the first bad file found, at set-up or mid-epoch, in the main process or
  a DataLoader worker, ends the run with one line (file, what is wrong, 1-based row) and exit
  status 2. Checkpoints and metrics.csv are only written after an epoch finishes, atomically,
  so nothing half-written stays behind.
- `skip`: every sample of every split is read once before training; the files that raise a
  DataError are left out, counted and listed (summary and results.json 'skipped_files').
"""
from __future__ import annotations

from torch.utils.data import Dataset

from ..datasets.common import DataError


class SkipBadFiles(Dataset):
    """`dataset` without the samples whose file is bad; attributes (classes, ...) pass through.

    skipped: [{'split', 'index', 'file', 'error'}] in index order."""

    def __init__(self, dataset, split: str, verbose: bool = True):
        self.dataset, self.split = dataset, split
        self.indices: list[int] = []
        self.skipped: list[dict] = []
        for index in range(len(dataset)):
            try:
                dataset[index]
            except DataError as err:
                self.skipped.append({"split": split, "index": index, "file": err.path, "error": str(err)})
            else:
                self.indices.append(index)
        if verbose and self.skipped:
            print(f"dataset.on_bad_file=skip: skipping {len(self.skipped)} bad file(s) of split '{split}', "
                  f"first: {self.skipped[0]['error']}", flush=True)
        if not self.indices:
            raise DataError(f"split '{split}': all {len(dataset)} samples are bad files "
                            f"(first: {self.skipped[0]['error'] if self.skipped else 'none'})")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]

    def __getattr__(self, name: str):
        if name in ("dataset", "__setstate__", "__getstate__"):  # unpickling in a worker
            raise AttributeError(name)
        return getattr(self.dataset, name)


def skipped_files(datasets: dict) -> list[dict]:
    """Every split's skipped files (one entry per file: a file skipped in two splits counts once)."""
    seen, out = set(), []
    for dataset in datasets.values():
        for entry in getattr(dataset, "skipped", []) if isinstance(dataset, SkipBadFiles) else []:
            if entry["file"] not in seen:
                seen.add(entry["file"])
                out.append(entry)
    return out


__all__ = ["DataError", "SkipBadFiles", "skipped_files"]
