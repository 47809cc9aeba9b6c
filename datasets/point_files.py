"""Point files: the toolkit's one reader for .txt, .npy, .h5/.hdf5, .ply and .pcd.

`read_point_file(path, index=0)` -> {'points': (N, 3) float32, and where the file holds them
'normals': (N, 3) float32, 'colors': (N, 3) float32 in [0, 1], 'seg': (N,) int64, 'label': int}.
`read_points(path)` -> the xyz (N, 3) float32 of a one-cloud file (.npy .txt .ply .pcd): what the
folder dataset and tools/predict.py use.

- PLY (ascii, binary little / big endian): the 'vertex' element's x y z, nx ny nz and red green
  blue; integer colours are scaled by their type's largest value (uchar: / 255), as Open3D does.
- PCD v0.7 (ascii, binary): x y z, normal_x normal_y normal_z and a packed rgb / rgba field
  (0x00RRGGBB in a U4, I4 or F4 field, as Open3D and PCL write it); points with a NaN coordinate
  (no return) are dropped, with their normals and colours.
- .txt / .npy / .h5 name no columns: those after xyz follow the public layouts (`split_columns`).

Every error names the file: DataError (a ValueError) for a malformed file, with the 1-based row
of a bad text row; FileNotFoundError, KeyError and IndexError for a missing file, key or sample.
"""
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..io import check_index
from .common import DataError, PathLike
from .pointcloud_io import parse_table

SUFFIXES = (".npy", ".txt", ".ply", ".pcd")  # one cloud per file
ALL_SUFFIXES = (".txt", ".npy", ".h5", ".hdf5", ".ply", ".pcd")  # .npy (S, N, C) and .h5: sample `index`
NO_POINTS = "no points could be read"
_PLY_TYPES = {
    "char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4", "float": "f4",
    "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
    "float32": "f4", "float64": "f8",
}  # fmt: skip
_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}
Columns = Dict[str, np.ndarray]  # field name -> (N,) values in the file's own dtype


# ----------------------------------------------------------------------------- column layouts
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


def check_xyz(points: np.ndarray, path: PathLike) -> np.ndarray:
    """points: (N, 3) -> float32, raising DataError naming the file for no points or a NaN/inf one."""
    if points.shape[0] == 0:
        raise DataError(f"{path}: {NO_POINTS} (the file holds 0 points)", path)
    xyz = np.ascontiguousarray(points, dtype=np.float32)
    if not np.isfinite(xyz).all():
        row = int(np.argmin(np.isfinite(xyz).all(axis=1)))
        raise DataError(f"{path}: point {row + 1} has a NaN or inf coordinate {xyz[row].tolist()}", path)
    return xyz


def split_columns(array: np.ndarray, path: PathLike) -> dict:
    """array: (N, C>=3) -> {'points', optional 'normals' / 'colors' / 'seg'} by the public column layouts.

    3: xyz; 6: xyz + unit normals (ModelNet40) or xyz + rgb (0-1 or 0-255); 7: xyz + normals + part
    label (ShapeNetPart)."""
    if array.ndim != 2 or array.shape[1] < 3 or array.shape[0] == 0:
        raise DataError(f"{path}: expected a non-empty (N, C>=3) point array, got shape {array.shape}", path)
    array = array.astype(np.float64)
    out = {"points": check_xyz(array[:, :3], path)}
    if array.shape[1] >= 6:
        extra = array[:, 3:6]
        if np.allclose(np.linalg.norm(extra, axis=1), 1.0, atol=1e-2):
            out["normals"] = extra.astype(np.float32)
        elif extra.min() >= 0:
            out["colors"] = (extra / (255.0 if extra.max() > 1.0 else 1.0)).astype(np.float32)
    if array.shape[1] == 7:
        out["seg"] = array[:, 6].astype(np.int64)
    return out


def _read_h5(path: Path, index: int) -> dict:
    """Sample `index` of an h5 file with keys data (S, N, C), optional label (S, 1) and pid / seg (S, N)."""
    import h5py  # a dependency, imported where h5 files are read

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file: {err}", path) from None
    with f:
        if "data" not in f:
            raise KeyError(f"{path}: expected a 'data' dataset (S, N, 3+), found keys {sorted(f.keys())}")
        data = f["data"]
        if data.ndim != 3:
            raise DataError(f"{path}: 'data' expected shape (S, N, C), got {data.shape}", path)
        check_index(index, data.shape[0], str(path))
        out = split_columns(np.asarray(data[index]), path)
        if "label" in f:
            out["label"] = int(np.asarray(f["label"][index]).reshape(-1)[0])
        for key in ("pid", "seg"):
            if key in f:
                out["seg"] = np.asarray(f[key][index]).reshape(-1).astype(np.int64)
    return out


# ----------------------------------------------------------------------------- PLY and PCD
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
    raise DataError(f"{path}: {NO_POINTS}: header has no '{end.decode()}' line within {limit} lines", path)


def _ply_layout(lines: List[str], path: Path):
    """-> (format, [(element, count, [(name, dtype)])]) from a PLY header."""
    fmt, elements = None, []
    for line in lines:
        words = line.split()
        try:
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
                    raise DataError(f"{path}: unknown PLY property type '{words[1]}'", path)
        except DataError:
            raise
        except (IndexError, ValueError):
            raise DataError(f"{path}: malformed PLY header line '{line}'", path) from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise DataError(f"{path}: PLY format must be ascii or binary_little/big_endian, got {fmt!r}", path)
    return fmt, elements


def _read_ply(path: Path) -> Columns:
    """The 'vertex' element's properties of an ascii or binary PLY, each (N,) in its declared dtype."""
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise DataError(f"{path}: not a PLY file (first line is not 'ply'), {NO_POINTS}", path)
        header = _header(f, path, b"end_header")
        header_lines = len(header) + 1  # the 'ply' line and the header lines
        fmt, elements = _ply_layout(header, path)
        names = [e[0] for e in elements]
        if "vertex" not in names:
            raise DataError(f"{path}: PLY has no 'vertex' element (elements: {names})", path)
        _, count, props = elements[names.index("vertex")]
        if any(t is None for _, t in props):
            raise DataError(f"{path}: PLY 'vertex' element has list properties; expected scalars x, y, z, ...", path)
        missing = [c for c in "xyz" if c not in [n for n, _ in props]]
        if missing:
            raise DataError(f"{path}: PLY 'vertex' element lacks properties {missing}", path)
        if fmt == "ascii":
            skip = sum(e[1] for e in elements[: names.index("vertex")])
            rows = [f.readline().decode("ascii", "replace") for _ in range(skip + count)][skip:]
            if sum(1 for r in rows if r.strip()) < count:
                raise DataError(f"{path}: truncated PLY, expected {count} vertex rows, found "
                                f"{sum(1 for r in rows if r.strip())}", path)
            table = parse_table(rows, path, None, len(props), first_line=header_lines + 1 + skip)  # (N, P)
            return {name: table[:, i].astype(t) for i, (name, t) in enumerate(props)}
        if names.index("vertex") != 0:
            raise DataError(f"{path}: binary PLY must store the 'vertex' element first", path)
        order = "<" if fmt == "binary_little_endian" else ">"
        data = _read_records(f, np.dtype([(n, order + t) for n, t in props]), count, path, "PLY")
    return {name: data[name] for name, _ in props}


def _pcd_fields(fields: dict, path: Path) -> list:
    """-> [(name, numpy type code, count)] of a PCD header's FIELDS / SIZE / TYPE / COUNT lines."""
    names, sizes, types = fields["FIELDS"], fields["SIZE"], fields["TYPE"]
    counts = fields.get("COUNT", ["1"] * len(names))
    out = []
    for name, size, kind, count in zip(names, sizes, types, counts):
        code = _PCD_TYPES.get((kind, int(size)))
        if code is None:
            raise DataError(f"{path}: PCD field '{name}' has unsupported TYPE {kind} SIZE {size}", path)
        out.append((name, code, int(count)))
    return out


def _pcd_ascii(f, layout: list, path: Path, first_line: int) -> Columns:
    rows = f.read().decode("ascii", "replace").splitlines()
    width = sum(count for _, _, count in layout)
    # NaN marks a point without a return: allowed here, dropped by the caller
    table = parse_table(rows, path, None, width, first_line=first_line, finite=False)  # (N, width)
    columns, start = {}, 0
    for name, code, count in layout:
        values = table[:, start] if count == 1 else table[:, start:start + count]
        if name in ("rgb", "rgba") and count == 1:  # written as the packed integer, or as its float's text
            whole = np.array_equal(values, np.round(values))
            columns[name] = values.astype(np.uint32) if whole else values.astype(np.float32).view(np.uint32)
        else:
            columns[name] = values.astype(code)
        start += count
    return columns


def _read_pcd(path: Path) -> Columns:
    """The fields of an ascii or binary PCD (v0.7), each (N,) (or (N, COUNT)) in its declared dtype."""
    with open(path, "rb") as f:
        lines = _header(f, path, b"DATA")
        fields = {ln.split()[0]: ln.split()[1:] for ln in lines if ln and not ln.startswith("#")}
        for key in ("FIELDS", "SIZE", "TYPE", "POINTS"):
            if key not in fields:
                raise DataError(f"{path}: PCD header lacks the {key} line", path)
        if any(c not in fields["FIELDS"] for c in "xyz"):
            raise DataError(f"{path}: PCD FIELDS {fields['FIELDS']} lack x, y or z", path)
        try:
            layout, count, kind = _pcd_fields(fields, path), int(fields["POINTS"][0]), fields["DATA"][0]
        except DataError:
            raise
        except (IndexError, ValueError):
            raise DataError(f"{path}: malformed PCD header (FIELDS, SIZE, TYPE, COUNT, POINTS or DATA)", path) from None
        if kind == "ascii":
            return _pcd_ascii(f, layout, path, first_line=len(lines) + 1)
        if kind != "binary":
            raise DataError(f"{path}: PCD DATA {kind!r} is not supported (ascii or binary; "
                            "re-save binary_compressed files as binary)", path)
        dtype = np.dtype([(n, "<" + c, (k,)) if k > 1 else (n, "<" + c) for n, c, k in layout])
        data = _read_records(f, dtype, count, path, "PCD")
    return {name: data[name] for name in dtype.names}


def _unit_colors(rgb: np.ndarray) -> np.ndarray:
    """rgb: (N, 3) -> float32 in [0, 1]; integer channels are divided by their type's largest value."""
    if np.issubdtype(rgb.dtype, np.integer):
        return (rgb / np.iinfo(rgb.dtype).max).astype(np.float32)
    return rgb.astype(np.float32)


def _cloud(columns: Columns, path: Path, normals: tuple, colors: tuple, drop_nan: bool = False) -> dict:
    """Named columns -> {'points', 'normals'?, 'colors'?}; drop_nan: rows with a NaN/inf coordinate are
    dropped (PCD's 'no return'), else they are an error."""
    xyz = np.stack([columns[c] for c in "xyz"], axis=1).astype(np.float64)  # (N, 3)
    keep = np.isfinite(xyz).all(axis=1) if drop_nan else np.ones(len(xyz), dtype=bool)
    out = {"points": check_xyz(xyz[keep], path)}
    if all(n in columns for n in normals):
        out["normals"] = np.stack([columns[n] for n in normals], axis=1)[keep].astype(np.float32)
    if all(c in columns for c in colors):
        out["colors"] = _unit_colors(np.stack([columns[c] for c in colors], axis=1)[keep])
    return out


def _ply_cloud(path: Path) -> dict:
    return _cloud(_read_ply(path), path, ("nx", "ny", "nz"), ("red", "green", "blue"))


def _pcd_cloud(path: Path) -> dict:
    columns = _read_pcd(path)
    packed = next((columns[k] for k in ("rgb", "rgba") if k in columns and columns[k].ndim == 1), None)
    if packed is not None:  # 0x00RRGGBB, whatever the field's declared type
        packed = np.ascontiguousarray(packed).view(np.uint32) if packed.dtype.itemsize == 4 else packed.astype(np.uint32)
        for shift, name in ((16, "red"), (8, "green"), (0, "blue")):
            columns[name] = ((packed >> shift) & 0xFF).astype(np.uint8)
    return _cloud(columns, path, ("normal_x", "normal_y", "normal_z"), ("red", "green", "blue"), drop_nan=True)


# ----------------------------------------------------------------------------- entry points
def _dispatch(path: Path, index: Optional[int]) -> dict:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return split_columns(read_txt(path, dtype=np.float64), path)
    if suffix == ".npy":
        array = read_npy(path)
        if array.ndim == 3 and index is not None:  # a stack of clouds (S, N, C)
            check_index(index, array.shape[0], str(path))
            array = array[index]
        return split_columns(array, path)
    if suffix in (".h5", ".hdf5"):
        return _read_h5(path, index)
    if suffix == ".ply":
        return _ply_cloud(path)
    return _pcd_cloud(path)


def read_point_file(path: PathLike, index: Optional[int] = 0) -> dict:
    """Read one cloud -> {'points': (N, 3) float32, optional 'normals', 'colors' (N, 3) float32, 'seg' (N,)
    int64, 'label' int}.

    index: the sample of an .h5 file or of an (S, N, C) .npy stack; None: the file must hold one cloud
    (no .h5, a 2-D .npy)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point file not found: no such file '{path}'")
    suffixes = ALL_SUFFIXES if index is not None else SUFFIXES
    if path.suffix.lower() not in suffixes:
        raise DataError(f"{path}: unsupported suffix {path.suffix.lower()!r}; expected one of {suffixes}", path)
    try:
        return _dispatch(path, index)
    except DataError:
        raise
    except (ValueError, UnicodeDecodeError, EOFError, OSError) as err:  # a corrupt file, named
        msg = str(err) if str(err).startswith(str(path)) else f"{path}: unreadable point file ({err})"
        raise DataError(msg, path) from None


def read_points(path: PathLike) -> np.ndarray:
    """The xyz of a one-cloud point file (.npy .txt .ply .pcd) -> (N, 3) float32; errors name the file."""
    return read_point_file(path, index=None)["points"]
