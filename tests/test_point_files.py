"""datasets/point_files.py, the one point-file reader: normals and colours from hand-written PLY and PCD
files (ascii and binary), Open3D's files read back, and errors that name the file and the row (the parser
cases of issue 16 moved here from test_reliability_data.py)."""
import numpy as np
import pytest

from pointclora.datasets.common import DataError
from pointclora.datasets.point_files import read_point_file, read_points

XYZ = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [-1.5, 0.25, 4.0]], dtype=np.float32)
NORMALS = np.array([[0.0, 0.0, 1.0], [0.6, 0.8, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
RGB = np.array([[255, 0, 0], [0, 128, 255], [51, 102, 153]], dtype=np.uint8)


def _ply(path, fmt: str, colour_type: str = "uchar") -> str:
    """x y z nx ny nz red green blue, with an 'intensity' between normals and colours."""
    props = [("x", "float"), ("y", "float"), ("z", "float"), ("nx", "float"), ("ny", "float"), ("nz", "float"),
             ("intensity", "double"), ("red", colour_type), ("green", colour_type), ("blue", colour_type)]
    head = f"ply\nformat {fmt} 1.0\ncomment by hand\nelement vertex {len(XYZ)}\n"
    head += "".join(f"property {t} {n}\n" for n, t in props) + "element face 0\nproperty list uchar int vertex_indices\n"
    head += "end_header\n"
    colours = RGB.astype(np.float64) * (257 if colour_type == "ushort" else 1)  # ushort: 0..65535
    if fmt == "ascii":
        body = "".join(" ".join(f"{v:g}" for v in (*p, *n, 0.5, *c)) + "\n" for p, n, c in zip(XYZ, NORMALS, colours))
        path.write_bytes((head + body).encode())
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        codes = {"float": "f4", "double": "f8", "uchar": "u1", "ushort": "u2"}
        table = np.zeros(len(XYZ), dtype=[(n, order + codes[t]) for n, t in props])
        for i, name in enumerate(["x", "y", "z"]):
            table[name], table["n" + name], table[("red", "green", "blue")[i]] = XYZ[:, i], NORMALS[:, i], colours[:, i]
        table["intensity"] = 0.5
        path.write_bytes(head.encode() + table.tobytes())
    return str(path)


def _pcd(path, data: str, rgb_type: str = "U", xyz=XYZ) -> str:
    """x y z normal_x normal_y normal_z rgb (packed 0x00RRGGBB, its field TYPE U or F) curvature."""
    packed = (RGB[:, 0].astype(np.uint32) << 16) | (RGB[:, 1].astype(np.uint32) << 8) | RGB[:, 2]  # (N,)
    head = ("# .PCD v0.7 - by hand\nVERSION 0.7\nFIELDS x y z normal_x normal_y normal_z rgb curvature\n"
            f"SIZE 4 4 4 4 4 4 4 4\nTYPE F F F F F F {rgb_type} F\nCOUNT 1 1 1 1 1 1 1 1\nWIDTH {len(xyz)}\n"
            f"HEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(xyz)}\nDATA {data}\n")
    if data == "ascii":  # the packed value as an integer (Open3D, PCL) or as its float's text
        rgb = [str(v) if rgb_type == "U" else repr(float(f)) for v, f in zip(packed, packed.view(np.float32))]
        body = "".join(" ".join(f"{v:g}" for v in (*p, *n)) + f" {c} 0.1\n" for p, n, c in zip(xyz, NORMALS, rgb))
        path.write_bytes((head + body).encode())
    else:
        table = np.zeros(len(xyz), dtype=[(n, "<f4") for n in ("x", "y", "z", "nx", "ny", "nz")]
                         + [("rgb", "<u4" if rgb_type == "U" else "<f4"), ("curvature", "<f4")])
        for i, name in enumerate("xyz"):
            table[name], table["n" + name] = xyz[:, i], NORMALS[:, i]
        table["rgb"] = packed if rgb_type == "U" else packed.view(np.float32)
        path.write_bytes(head.encode() + table.tobytes())
    return str(path)


@pytest.mark.parametrize("fmt, colour_type", [("ascii", "uchar"), ("binary_little_endian", "uchar"),
                                              ("binary_big_endian", "uchar"), ("ascii", "ushort"),
                                              ("binary_little_endian", "ushort")])
def test_ply_points_normals_and_colours(tmp_path, fmt, colour_type):
    cloud = read_point_file(_ply(tmp_path / "a.ply", fmt, colour_type))
    assert sorted(cloud) == ["colors", "normals", "points"]
    np.testing.assert_array_equal(cloud["points"], XYZ)
    np.testing.assert_array_equal(cloud["normals"], NORMALS)
    assert cloud["colors"].dtype == np.float32
    np.testing.assert_allclose(cloud["colors"], RGB / 255.0, atol=1e-7)  # uchar / 255, ushort / 65535
    np.testing.assert_array_equal(read_points(tmp_path / "a.ply"), XYZ)


@pytest.mark.parametrize("data, rgb_type", [("ascii", "U"), ("ascii", "F"), ("binary", "U"), ("binary", "F")])
def test_pcd_points_normals_and_packed_rgb(tmp_path, data, rgb_type):
    cloud = read_point_file(_pcd(tmp_path / "a.pcd", data, rgb_type))
    np.testing.assert_array_equal(cloud["points"], XYZ)
    np.testing.assert_array_equal(cloud["normals"], NORMALS)
    assert (np.round(cloud["colors"] * 255).astype(int) == RGB).all()
    assert cloud["colors"][0].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("data", ["ascii", "binary"])
def test_pcd_points_without_return_drop_their_normals_and_colours(tmp_path, data):
    xyz = XYZ.copy()
    xyz[1] = np.nan
    cloud = read_point_file(_pcd(tmp_path / "a.pcd", data, xyz=xyz))
    assert cloud["points"].tolist() == XYZ[[0, 2]].tolist()
    assert cloud["normals"].tolist() == NORMALS[[0, 2]].tolist()
    assert (np.round(cloud["colors"] * 255).astype(int) == RGB[[0, 2]]).all()


def test_ascii_pcd_with_a_multi_value_field(tmp_path):
    # COUNT 3 of a descriptor before x y z: its three columns are skipped, not taken for x y z
    path = tmp_path / "fpfh.pcd"
    path.write_text("VERSION 0.7\nFIELDS hist x y z\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 3 1 1 1\nWIDTH 2\nHEIGHT 1\n"
                    "POINTS 2\nDATA ascii\n9 9 9 1 2 3\n8 8 8 4 5 6\n")
    assert read_points(path).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_a_file_without_normals_or_colours_has_only_points(tmp_path):
    path = tmp_path / "xyz.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
                    "property uchar red\nend_header\n0 0 0 1\n1 1 1 2\n")  # red alone is no colour
    assert sorted(read_point_file(path)) == ["points"]


@pytest.mark.parametrize("fmt", ["ply", "pcd"])
@pytest.mark.parametrize("ascii", [True, False])
def test_reads_what_open3d_writes(tmp_path, fmt, ascii):
    o3d = pytest.importorskip("open3d")  # a cross-check against another writer, where it is installed
    xyz = np.random.default_rng(0).uniform(-1, 1, (50, 3))
    normals = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
    colours = np.random.default_rng(1).integers(0, 256, (50, 3)) / 255.0
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
    cloud.normals, cloud.colors = o3d.utility.Vector3dVector(normals), o3d.utility.Vector3dVector(colours)
    path = str(tmp_path / f"o3d.{fmt}")
    assert o3d.io.write_point_cloud(path, cloud, write_ascii=ascii)
    ours, theirs = read_point_file(path), o3d.io.read_point_cloud(path)
    atol = 1e-5 if ascii else 1e-7  # Open3D's ascii PLY keeps 6 significant digits
    np.testing.assert_allclose(ours["points"], xyz, atol=atol)
    np.testing.assert_allclose(ours["normals"], normals, atol=atol)
    np.testing.assert_allclose(ours["colors"], colours, atol=1e-7)
    np.testing.assert_allclose(ours["points"], np.asarray(theirs.points), atol=1e-7)
    np.testing.assert_allclose(ours["colors"], np.asarray(theirs.colors), atol=1e-7)


PLY_ASCII = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
PLY_BIN = ("ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
           "property float z\nend_header\n")
PCD_HEAD = "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 4\nHEIGHT 1\nPOINTS 4\nDATA {}\n"


@pytest.mark.parametrize("name, payload, match", [
    ("a.ply", (PLY_ASCII + "0 0 0\n1 1 1\n2 2\n").encode(), r"row 10: expected 3 values, found 2"),
    ("b.ply", PLY_BIN.encode() + np.zeros(10, "<f4").tobytes() + b"\x00\x00", r"truncated PLY, expected 4 points"),
    ("c.pcd", PCD_HEAD.format("binary").encode() + np.zeros(7, "<f4").tobytes() + b"\x00",
     r"truncated PCD, expected 4 points"),
    ("d.pcd", (PCD_HEAD.format("ascii") + "0 0 0\n1 1 1\n1 x 1\n2 2 2\n").encode(), r"row 12: 'x' is not a number"),
    ("e.txt", b"0 0 0\n1 1\n", r"row 2: expected 3 values, found 2"),
    ("f.npy", b"\x93NUMPY garbage", r"not a plain numeric .npy array"),
    ("h.ply", b"ply\nformat ascii 1.0\nelement vertex\nend_header\n", "malformed PLY header line 'element vertex'"),
    ("i.ply", b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n0 0\n",
     r"PLY 'vertex' element lacks properties \['z'\]"),
    ("j.ply", b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\n"
     b"end_header\n", "empty point file"),
    ("k.pcd", b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS\nDATA ascii\n", "malformed PCD header"),
    ("l.pcd", b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1\nDATA binary_compressed\n",
     "'binary_compressed' is not supported"),
    ("m.pcd", b"garbage\n", "no points could be read: header has no 'DATA' line"),
    ("n.ply", b"PLY?\n", "not a PLY file"),
])
def test_point_folder_parsers_name_the_file_and_row(tmp_path, name, payload, match):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(DataError, match=match) as info:
        read_points(path)
    assert str(info.value).startswith(str(path))


def test_pcd_ascii_points_without_return_are_dropped(tmp_path):
    path = tmp_path / "scan.pcd"
    path.write_text(PCD_HEAD.format("ascii") + "0 0 0\nnan nan nan\n1 1 1\n2 2 2\n")
    assert read_points(path).tolist() == [[0, 0, 0], [1, 1, 1], [2, 2, 2]]


def test_read_points_takes_one_cloud_files_only(tmp_path):
    with pytest.raises(FileNotFoundError, match="point file not found: no such file .*nope.ply"):
        read_points(tmp_path / "nope.ply")
    np.save(tmp_path / "stack.npy", np.zeros((2, 5, 3)))
    with pytest.raises(DataError, match=r"stack.npy: expected a non-empty \(N, C>=3\) point array, got shape \(2, 5, 3\)"):
        read_points(tmp_path / "stack.npy")
    assert read_point_file(tmp_path / "stack.npy", index=1)["points"].shape == (5, 3)  # a stack, for the viewer
    (tmp_path / "a.h5").write_bytes(b"")
    with pytest.raises(DataError, match="a.h5: unsupported suffix '.h5'"):
        read_points(tmp_path / "a.h5")
