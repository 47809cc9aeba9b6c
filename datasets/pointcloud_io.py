"""Reading and writing the public point-cloud file formats, with checks.

- text point files (ModelNet40 'x,y,z,nx,ny,nz', ShapeNetPart 'x y z nx ny nz part')
- h5 arrays (ScanObjectNN, ModelNet40 ply_hdf5_2048)
- the ModelNet40 `.dat` pickle cache, read with a restricted unpickler
- atomic writes, through `pointclora.io.atomic_path` (the toolkit's one atomic-write helper)
"""
import io
import pickle
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from ..io import atomic_path
from .common import DataError, PathLike, hint, malformed, require_file


def _first_bad_row(lines: Sequence[str], delimiter: Optional[str], columns: Optional[int], first_line: int):
    """(1-based line number, what is wrong) of the first row that is not `columns` numbers, or None."""
    for number, line in enumerate(lines, first_line):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        tokens = [t for t in (text.split(delimiter) if delimiter else text.split())]
        if columns is None:
            columns = len(tokens)
        if len(tokens) != columns:
            return number, f"expected {columns} values, found {len(tokens)} ('{text[:60]}')"
        for token in tokens:
            try:
                float(token)
            except ValueError:
                return number, f"'{token.strip()[:20]}' is not a number ('{text[:60]}')"
    return None


def parse_table(lines: Sequence[str], path: PathLike, delimiter: Optional[str] = None, columns: Optional[int] = None,
                first_line: int = 1, dataset: Optional[str] = None, finite: bool = True) -> np.ndarray:
    """Rows of numbers -> (N, C) float64; a bad row raises DataError naming the file and its 1-based line.

    lines: the file's lines from line `first_line` on (blank and '#' lines are skipped); columns:
    the expected count (None: that of the first row); NaN / inf values are an error unless finite=False."""
    def fail(what: str):
        return malformed(path, what, dataset) if dataset else DataError(f"{path}: {what}", path)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            data = np.loadtxt(lines, delimiter=delimiter, dtype=np.float64, ndmin=2)
    except ValueError:  # non-numeric token or ragged rows: find which
        bad = _first_bad_row(lines, delimiter, columns, first_line)
        raise fail(f"row {bad[0]}: {bad[1]}" if bad else "not a numeric table") from None
    if data.shape[0] == 0:
        raise fail("empty point file (no rows)")
    if columns is not None and data.shape[1] != columns:
        raise fail(f"expected {columns} values per row, found {data.shape[1]} (row {first_line})")
    ok = np.isfinite(data).all(axis=1)
    if finite and not ok.all():
        numbers = [n for n, line in enumerate(lines, first_line) if line.strip() and not line.strip().startswith("#")]
        row = int(np.argmin(ok))
        raise fail(f"row {numbers[row] if row < len(numbers) else row + first_line}: non-finite value "
                   f"(NaN/inf) {data[row].tolist()}")
    return data


def read_text_points(path: PathLike, columns: int, delimiter: Optional[str], dataset: str) -> np.ndarray:
    """Read a text point file -> (N, columns) float32.

    delimiter: ',' for ModelNet40, None (whitespace) for ShapeNetPart. Raises
    FileNotFoundError for a missing file and DataError (a ValueError) naming the file and the
    1-based row for a non-numeric or short row, a wrong column count, an empty file or NaN/inf."""
    path = require_file(Path(path), "point file", dataset)
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as err:
        raise malformed(path, f"not a text point file ({err})", dataset) from None
    return parse_table(lines, path, delimiter, columns, dataset=dataset).astype(np.float32)


def format_rows(data: np.ndarray, fmt: str, delimiter: str) -> str:
    """data: (N, C) -> text with one row per line (much faster than np.savetxt)."""
    n, c = data.shape
    row = delimiter.join([fmt] * c) + "\n"
    return (row * n) % tuple(data.ravel().tolist())


def open_h5(path: PathLike, dataset: str):
    """Open an h5 file read-only; a truncated/corrupt file raises ValueError naming it."""
    import h5py

    path = require_file(Path(path), "h5 file", dataset)
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise malformed(path, f"cannot be read as HDF5, the file is truncated or corrupt ({err})", dataset) from None


def read_h5_arrays(path: PathLike, keys: Sequence[str], optional: Sequence[str], dataset: str) -> Dict[str, np.ndarray]:
    """Read `keys` (required) and `optional` keys of an h5 file into numpy arrays."""
    out = {}
    with open_h5(path, dataset) as f:
        for key in list(keys) + list(optional):
            if key not in f:
                if key in optional:
                    continue
                raise KeyError(f"{path}: h5 key '{key}' not found (keys: {sorted(f.keys())}).{hint(dataset)}")
            try:
                out[key] = np.asarray(f[key][()])
            except (OSError, RuntimeError) as err:
                raise malformed(path, f"h5 key '{key}' cannot be read, the file is truncated ({err})", dataset) from None
    return out


# ---------------------------------------------------------------- restricted pickle
# Only what numpy arrays (pickle protocols 2-5, numpy 1.x and 2.x module names)
# need: a downloaded .dat must not be able to run code.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocol 2 stores bytes as codecs.encode(str, 'latin1')
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array/dtype constructors."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"{self.source}: refusing to load global '{module}.{name}'; only numpy arrays, dtypes and "
                "plain containers are allowed in a dataset cache"
            )
        return super().find_class(module, name)


def safe_pickle_load(path: PathLike, dataset: str):
    """Load a pickle holding only numpy arrays and plain containers.

    Raises ValueError naming the file for a forbidden global, a truncated or
    otherwise unreadable pickle.
    """
    path = require_file(Path(path), "pickle cache", dataset)
    data = path.read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    except pickle.UnpicklingError as err:
        raise malformed(path, f"unsafe, truncated or corrupt pickle ({err})", dataset) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise malformed(path, f"truncated or corrupt pickle ({type(err).__name__}: {err})", dataset) from None


def atomic_pickle_dump(obj, path: PathLike) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(obj, f, protocol=4)
