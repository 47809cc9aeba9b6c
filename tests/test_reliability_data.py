"""Bad data files name the file, what is wrong and the 1-based row (issue 16), as a DataError
(a ValueError) that the engine turns into one line and exit status 2."""
import pytest

from conftest import tiny_demo_data
from pointclora.datasets.common import DataError
from pointclora.datasets.modelnet40 import ModelNet40
from pointclora.datasets.shapenetpart import ShapeNetPart


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return tiny_demo_data(tmp_path_factory, ("ModelNet40", "ShapeNetPart"), train_per_class=1, npoints=32)


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


GOOD6 = "0.1,0.2,0.3,0,0,1\n"


@pytest.mark.parametrize("text, match", [
    (GOOD6 * 2 + "0.1,0.2\n" + GOOD6 * 20, r"row 3: expected 6 values, found 2 \('0.1,0.2'\)"),
    (GOOD6 * 4 + "0.1,x,0.3,0,0,1\n" + GOOD6 * 20, r"row 5: 'x' is not a number"),
    (GOOD6 * 6 + "nan,0.2,0.3,0,0,1\n" + GOOD6 * 20, r"row 7: non-finite value"),
    ("", r"empty point file"),
])
def test_modelnet40_text_rows(demo, tmp_path, text, match):
    folder = _copy(demo / "modelnet40_normal_resampled", tmp_path / "modelnet40_normal_resampled")
    first = (folder / "modelnet40_train.txt").read_text().split()[0]
    victim = folder / first.rsplit("_", 1)[0] / f"{first}.txt"
    victim.write_text(text)
    ds = ModelNet40(tmp_path, "train", npoints=8, format="txt")
    with pytest.raises(DataError, match=match) as info:
        ds[0]
    assert str(info.value).startswith(str(victim)) and info.value.path == str(victim)


def test_modelnet40_listed_but_missing_shape_stops_at_construction(demo, tmp_path):
    folder = _copy(demo / "modelnet40_normal_resampled", tmp_path / "modelnet40_normal_resampled")
    names = (folder / "modelnet40_train.txt").read_text().split()
    victim = folder / names[-1].rsplit("_", 1)[0] / f"{names[-1]}.txt"
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=f"1 of the {len(names)} shapes listed in .*modelnet40_train.txt"):
        ModelNet40(tmp_path, "train", npoints=8, format="txt")


@pytest.mark.parametrize("bad, match", [
    ("0 0 0 0 0 1", r"row 2: expected 7 values, found 6"),
    ("0 0 0 0 0 1 99", r"row 2: part id 99"),
])
def test_shapenetpart_bad_line(demo, tmp_path, bad, match):
    from pointclora.datasets.shapenetpart import FOLDER

    folder = _copy(demo / FOLDER, tmp_path / FOLDER)
    ds = ShapeNetPart(tmp_path, "train", npoints=16)
    category, victim = ds.datapath[0]
    lines = victim.read_text().splitlines()
    lines[1] = bad
    victim.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match) as info:
        ds[0]
    assert str(victim) in str(info.value) and folder.exists()


def test_data_error_survives_a_dataloader_worker():
    """torch re-raises a worker's exception as type(err)(<traceback text>): the message is recovered."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Bad(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            raise DataError("/data/x.txt: row 3: expected 6 values, found 2", "/data/x.txt")

    with pytest.raises(DataError) as info:
        next(iter(DataLoader(Bad(), num_workers=1)))
    assert str(info.value) == "/data/x.txt: row 3: expected 6 values, found 2"
