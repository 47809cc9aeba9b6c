"""A folder of point-cloud files (.npy, .txt, .ply, .pcd) as an unlabelled dataset, for pre-training.

Two layouts:
- any folder: every file with a known suffix under `root` (recursively, sorted by path) is one
  sample, for every split name;
- ShapeNet-55 (Point-MAE / Point-BERT pre-training): root = ShapeNet55-34/shapenet_pc (one
  8192-point .npy per shape), file_list = ShapeNet55-34/ShapeNet-55/{split}.txt (one file name
  per line, relative to root; `{split}` is replaced by the split name).

Items are {'points': (npoints, 3) float32}: a random subset of `npoints` of the file's xyz (a new
one every epoch), centred and scaled into the unit sphere, as Point-MAE's ShapeNet55Dataset
(random_sample, then pc_norm). A file with fewer points than `npoints` is sampled with
repetition (partial scans vary in size; a repeated point changes neither patch centre much).
Columns past xyz (normals, colours, intensity) are ignored.
"""
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from .common import DataError, PathLike, check_positive, pc_normalize
from .pointcloud_io import parse_table
from .transforms import apply_transform

SUFFIXES = (".npy", ".txt", ".ply", ".pcd")
_PLY_TYPES = {
    "char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4", "float": "f4",
    "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
    "float32": "f4", "float64": "f8",
}  # fmt: skip
_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}


# ----------------------------------------------------------------------------- readers
def read_npy(path: PathLike) -> np.ndarray:
    """A plain numeric .npy array (no pickles), any shape."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"{path}: not a plain numeric .npy array ({err})") from None


def read_txt(path: PathLike, dtype=np.float32) -> np.ndarray:
    """A point table, rows 'x y z ...' (space separated) or 'x,y,z,...' -> (N, C); a bad row raises
    DataError naming the file and its 1-based line."""
    path = Path(path)
    lines = path.read_text().splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    return parse_table(lines, path, "," if "," in first else None).astype(dtype)


def _read_records(f, dtype: np.dtype, count: int, path: Path, kind: str) -> np.ndarray:
    """`count` binary records of `dtype` from `f`; a short file raises DataError saying how short."""
    buf = f.read(dtype.itemsize * count)
    found = len(buf) // dtype.itemsize
    if found != count:
        raise DataError(f"{path}: truncated {kind}, expected {count} points ({dtype.itemsize * count} bytes), "
                        f"found {found} complete points ({len(buf)} bytes)", path)
    return np.frombuffer(buf, dtype=dtype)


def _header(f, path: Path, end: bytes, limit: int = 200) -> List[str]:
    """Reads header lines up to and including the one starting with `end`."""
    lines = []
    for _ in range(limit):
        line = f.readline()
        if not line:
            break
        lines.append(line.decode("ascii", "replace").strip())
        if line.startswith(end):
            return lines
    raise ValueError(f"{path}: header has no '{end.decode()}' line within {limit} lines")


def _ply_layout(lines: List[str], path: Path):
    """-> (format, [(element, count, [(name, dtype)])]) from a PLY header."""
    fmt, elements = None, []
    for line in lines:
        words = line.split()
        if words[:1] == ["format"]:
            fmt = words[1]
        elif words[:1] == ["element"]:
            elements.append((words[1], int(words[2]), []))
        elif words[:1] == ["property"] and elements:
            if words[1] == "list":
                elements[-1][2].append((words[-1], None))
            elif words[1] in _PLY_TYPES:
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise ValueError(f"{path}: unknown PLY property type '{words[1]}'")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"{path}: PLY format must be ascii or binary_little/big_endian, got {fmt!r}")
    return fmt, elements


def _read_ply(path: Path) -> np.ndarray:
    """x, y, z of the 'vertex' element of an ascii or binary PLY -> (N, 3) float32."""
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path}: not a PLY file (first line is not 'ply')")
        header = _header(f, path, b"end_header")
        header_lines = len(header) + 1  # the 'ply' line and the header lines
        fmt, elements = _ply_layout(header, path)
        names = [e[0] for e in elements]
        if "vertex" not in names:
            raise ValueError(f"{path}: PLY has no 'vertex' element (elements: {names})")
        _, count, props = elements[names.index("vertex")]
        if any(t is None for _, t in props):
            raise ValueError(f"{path}: PLY 'vertex' element has list properties; expected scalars x, y, z, ...")
        missing = [c for c in "xyz" if c not in [n for n, _ in props]]
        if missing:
            raise ValueError(f"{path}: PLY 'vertex' element lacks properties {missing}")
        if fmt == "ascii":
            skip = sum(e[1] for e in elements[: names.index("vertex")])
            rows = [f.readline().decode("ascii", "replace") for _ in range(skip + count)][skip:]
            if sum(1 for r in rows if r.strip()) < count:
                raise DataError(f"{path}: truncated PLY, expected {count} vertex rows, found "
                                f"{sum(1 for r in rows if r.strip())}", path)
            table = parse_table(rows, path, None, len(props), first_line=header_lines + 1 + skip)
            cols = [[n for n, _ in props].index(c) for c in "xyz"]
            return table[:, cols].astype(np.float32)
        if names.index("vertex") != 0:
            raise ValueError(f"{path}: binary PLY must store the 'vertex' element first")
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(n, order + t) for n, t in props])
        data = _read_records(f, dtype, count, path, "PLY")
    return np.stack([data[c] for c in "xyz"], axis=1).astype(np.float32)


def _pcd_dtype(fields: dict, path: Path) -> np.dtype:
    names, sizes, types = fields["FIELDS"], fields["SIZE"], fields["TYPE"]
    counts = fields.get("COUNT", ["1"] * len(names))
    out = []
    for name, size, kind, count in zip(names, sizes, types, counts):
        code = _PCD_TYPES.get((kind, int(size)))
        if code is None:
            raise ValueError(f"{path}: PCD field '{name}' has unsupported TYPE {kind} SIZE {size}")
        out.append((name, "<" + code, (int(count),)) if int(count) > 1 else (name, "<" + code))
    return np.dtype(out)


def _read_pcd(path: Path) -> np.ndarray:
    """x, y, z of an ascii or binary PCD (v0.7) -> (N, 3) float32; NaN points (no return) are dropped."""
    with open(path, "rb") as f:
        lines = _header(f, path, b"DATA")
        fields = {ln.split()[0]: ln.split()[1:] for ln in lines if ln and not ln.startswith("#")}
        for key in ("FIELDS", "SIZE", "TYPE", "POINTS"):
            if key not in fields:
                raise ValueError(f"{path}: PCD header lacks the {key} line")
        if any(c not in fields["FIELDS"] for c in "xyz"):
            raise ValueError(f"{path}: PCD FIELDS {fields['FIELDS']} lack x, y or z")
        dtype, count, kind = _pcd_dtype(fields, path), int(fields["POINTS"][0]), fields["DATA"][0]
        if kind == "ascii":  # NaN marks a point without a return: allowed here, dropped below
            rows = f.read().decode("ascii", "replace").splitlines()
            table = parse_table(rows, path, None, len(fields["FIELDS"]), first_line=len(lines) + 1, finite=False)
            cols = [fields["FIELDS"].index(c) for c in "xyz"]  # ascii: COUNT 1 for x, y, z assumed
            xyz = table[:, cols]
        elif kind == "binary":
            data = _read_records(f, dtype, count, path, "PCD")
            xyz = np.stack([data[c] for c in "xyz"], axis=1)
        else:
            raise ValueError(f"{path}: PCD DATA {kind!r} is not supported (ascii or binary; "
                             "re-save binary_compressed files as binary)")
    xyz = xyz[np.isfinite(xyz).all(axis=1)]
    return xyz.astype(np.float32)


READERS = {".npy": read_npy, ".txt": read_txt, ".ply": _read_ply, ".pcd": _read_pcd}


def read_points(path: PathLike) -> np.ndarray:
    """Reads one point file -> xyz (N, 3) float32. Raises FileNotFoundError / ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point file not found: {path}")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown point file suffix; expected one of {SUFFIXES}", path)
    try:
        data = reader(path)
    except DataError:
        raise
    except (ValueError, IndexError, UnicodeDecodeError, EOFError, OSError) as err:  # a corrupt file, named
        msg = str(err) if str(err).startswith(str(path)) else f"{path}: unreadable point file ({err})"
        raise DataError(msg, path) from None
    if data.ndim != 2 or data.shape[1] < 3 or data.shape[0] == 0:
        raise DataError(f"{path}: expected a non-empty (N, C>=3) point array, got shape {data.shape}", path)
    xyz = np.ascontiguousarray(data[:, :3], dtype=np.float32)
    if not np.isfinite(xyz).all():
        row = int(np.argmin(np.isfinite(xyz).all(axis=1)))
        raise DataError(f"{path}: point {row + 1} has a NaN or inf coordinate {xyz[row].tolist()}", path)
    return xyz


# ----------------------------------------------------------------------------- dataset
def list_files(root: Path, file_list: Optional[str], split: str) -> List[Path]:
    """The split's files: the names in `file_list` (relative to root), else every point file under root."""
    if file_list:
        list_path = Path(file_list.replace("{split}", split)).expanduser()
        if not list_path.is_file():
            raise FileNotFoundError(f"dataset.file_list: no file '{list_path}' (split '{split}')")
        names = [ln.strip() for ln in list_path.read_text().splitlines() if ln.strip()]
        files = [root / name for name in names]
        absent = [str(p) for p in files if not p.is_file()]
        if absent:
            raise FileNotFoundError(f"dataset.file_list '{list_path}' names {len(absent)} files missing under "
                                    f"root '{root}', e.g. {absent[:3]}")
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"dataset.root '{root}': no point files ({', '.join(SUFFIXES)}) found")
    return files


class PointCloudFolder(Dataset):
    """Unlabelled point clouds from files; items {'points': (npoints, 3) float32}."""

    labelled = False  # no 'label': tools/train.py refuses it before training, tools/pretrain.py uses it

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        npoints: int = 1024,
        file_list: Optional[str] = None,
        transform: Optional[Callable] = None,
    ):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset.root: folder '{self.root}' not found (expected a folder of "
                                    f"{', '.join(SUFFIXES)} point files)")
        self.split = split
        self.npoints = check_positive("npoints", npoints)
        self.transform = transform
        self.files = list_files(self.root, file_list, split)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        xyz = read_points(self.files[index])  # (P, 3)
        n = xyz.shape[0]
        if n >= self.npoints:
            idx = torch.randperm(n)[: self.npoints]
        else:
            idx = torch.randint(n, (self.npoints,))
        points = pc_normalize(xyz[idx.numpy()]).astype(np.float32)  # (npoints, 3)
        item = {"points": torch.from_numpy(points)}
        if self.transform is not None:
            item = apply_transform(self.transform, item)
        return item
