"""Your own data, each modality: a folder ``root/<class>/<files>`` trains a Perceiver from the
command line, is split into train / validation / test when it has no split, and ``predict``
reads a file of that kind with the exported model (the walk-throughs of docs/training.md, in
shrunk form); bad folders and files stop with a message naming them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

pytest.importorskip("lightning")

import data_helpers as H  # noqa: E402
from test_cli import tiny_args, write_image_folder  # noqa: E402

from omniperceiver.cli import main  # noqa: E402
from omniperceiver.data.readers import read_ply, read_points  # noqa: E402
from omniperceiver.errors import DatasetError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

# Per modality: the config, a folder writer, the options shrinking data and model, a file to
# predict (relative to the folder).
WALK_THROUGHS = {
    "image_folder.yaml": (
        lambda root: write_image_folder(root, size=16),
        ["--data.init_args.image_shape", "16"],
        {"image_shape": [16, 16], "num_bands": 4}, "cat/0.png"),
    "audio_folder.yaml": (
        lambda root: H.write_wav_folder(root, count=8),
        ["--data.init_args.sample_rate", "8000", "--data.init_args.duration", "0.25"],
        {"max_samples": 2000, "sample_rate": 8000, "n_mels": 16, "hop_length": 80,
         "num_bands": 4}, "high/0.wav"),
    "video_folder.yaml": (
        lambda root: H.write_video_folder(root, count=8),
        ["--data.init_args.num_frames", "4", "--data.init_args.image_shape", "12"],
        {"video_shape": [4, 12, 12], "num_bands": 4}, "down/0.npy"),
    "point_folder.yaml": (
        lambda root: H.write_point_folder(root, count=8),
        ["--data.init_args.num_points", "64"], {"num_bands": 4}, "tetra/1.ply"),
}


def own_data_args(config: str, folder: Path, run: Path, extra: list[str] | None = None):
    _, data_args, model_args, _ = WALK_THROUGHS[config]
    return tiny_args(config, run, model_args=model_args,
                     extra=["--data.init_args.root", str(folder), *data_args, *(extra or [])])


@pytest.mark.parametrize("config", sorted(WALK_THROUGHS))
def test_walk_through_fit_then_predict_a_file(config, tmp_path, capsys):
    """A folder without a split trains, is tested on its held-out part, and the exported
    model predicts a file of the modality."""
    write, _, _, predict_file = WALK_THROUGHS[config]
    folder = write(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["fit", *own_data_args(config, folder, run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and 0 <= metrics["test_accuracy"] <= 1
    assert metrics["test_examples"] == 2  # 10% of 16 files, one per class
    assert (run / "model" / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["predict", str(run / "model"), str(folder / predict_file)]) == 0
    out = capsys.readouterr().out
    assert str(folder / predict_file) in out and "%" in out


def _image_data(root: Path, **kwargs):
    from omniperceiver.training.data import ImageFolderData

    return ImageFolderData(root=str(root), image_shape=8, batch_size=2, **kwargs)


def test_split_is_stratified_disjoint_and_fixed_by_the_seed(tmp_path):
    root = write_image_folder(tmp_path / "images", size=8)  # 2 classes x 8 images

    def paths(dataset):  # the files of a folder dataset or of a subset of one
        if isinstance(dataset, Subset):
            inner = paths(dataset.dataset)
            return [inner[i] for i in dataset.indices]
        return [path for path, _ in dataset.samples]

    def splits(seed):
        data = _image_data(root, seed=seed, test_size=0.25, val_size=2)
        return {s: paths(data.dataset(s)) for s in ("train", "val", "test")}

    first = splits(0)
    assert splits(0) == first and splits(1) != first
    assert [len(first[s]) for s in ("train", "val", "test")] == [10, 2, 4]
    assert len({p for paths in first.values() for p in paths}) == 16
    for part in ("val", "test"):
        assert {p.parent.name for p in first[part]} == {"cat", "dog"}


def test_train_and_test_subfolders_are_the_split(tmp_path):
    write_image_folder(tmp_path / "data" / "train", size=8)
    write_image_folder(tmp_path / "data" / "test", size=8)
    data = _image_data(tmp_path / "data", val_size=0)
    assert data.classes == ["cat", "dog"]
    assert len(data.dataset("train")) == 16 and len(data.dataset("test")) == 16
    assert data.test_root == tmp_path / "data" / "test"


def test_ply_reader_ascii_and_binary(tmp_path):
    points = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    for binary in (False, True):
        path = H.write_ply(tmp_path / f"p{binary}.ply", points, binary=binary)
        np.testing.assert_allclose(read_ply(path), points, atol=1e-6)
        x = read_points(path, 7, np.random.default_rng(0))
        assert x.shape == (7, 3) and x.dtype == torch.float32
        assert torch.linalg.norm(x, dim=1).max() <= 1 + 1e-6
    H.write_garbage(tmp_path / "bad.ply")
    with pytest.raises(DatasetError, match="bad.ply: not a .ply file"):
        read_ply(tmp_path / "bad.ply")


# --- errors -----------------------------------------------------------------------------------


def _fit(config: str, folder: Path, tmp_path: Path, capsys, extra=None) -> str:
    code = main(["fit", *own_data_args(config, folder, tmp_path / "run", extra)])
    assert code == 1
    return capsys.readouterr().err


def test_one_class_is_not_enough(tmp_path, capsys):
    folder = H.write_wav_folder(tmp_path / "data")
    for f in (folder / "high").iterdir():
        f.unlink()
    (folder / "high").rmdir()
    err = _fit("audio_folder.yaml", folder, tmp_path, capsys)
    assert f"{folder} has 1 class folder (low)" in err and "at least 2" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_empty_class_folder_is_named(tmp_path, capsys):
    folder = H.write_video_folder(tmp_path / "data", count=8)
    (folder / "empty").mkdir()
    err = _fit("video_folder.yaml", folder, tmp_path, capsys)
    assert f"class folder {folder / 'empty'} contains no" in err


# Every file of the folder in the first batch (the folder is also the test folder), so the bad
# one is read.
ALL_IN_ONE_BATCH = ["--data.init_args.batch_size", "17", "--data.init_args.test_size", "0",
                    "--data.init_args.val_size", "0"]


def test_unreadable_file_is_named_or_skipped(tmp_path, capsys):
    folder = H.write_point_folder(tmp_path / "data", count=8)
    H.write_garbage(folder / "cube" / "broken.ply")
    err = _fit("point_folder.yaml", folder, tmp_path, capsys,
               extra=[*ALL_IN_ONE_BATCH, "--data.init_args.test_root", str(folder)])
    assert "broken.ply: not a .ply file" in err
    run = tmp_path / "skip"
    with pytest.warns(UserWarning, match="skipping unreadable file .*broken.ply"):
        assert main(["fit", *own_data_args("point_folder.yaml", folder, run,
                                           ["--data.init_args.on_error", "skip"])]) == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2


@pytest.mark.parametrize("config, write, bad, array, message", [
    ("point_folder.yaml", H.write_point_folder, "tetra/normals.npy", (10, 6),
     "expected points of shape (N, 3), got shape (10, 6)"),
    ("video_folder.yaml", H.write_video_folder, "down/rgb.npy", (4, 12, 12, 3),
     "expected shape (T, H, W, 1) with 1 channels, got shape (4, 12, 12, 3)"),
], ids=["points", "video"])
def test_a_file_of_another_shape_is_named(config, write, bad, array, message, tmp_path,
                                          capsys):
    folder = write(tmp_path / "data", count=8)
    np.save(folder / bad, np.zeros(array, np.float32))
    err = _fit(config, folder, tmp_path, capsys,
               extra=[*ALL_IN_ONE_BATCH, "--data.init_args.test_root", str(folder)])
    assert f"{folder / bad}: {message}" in err
