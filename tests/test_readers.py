"""A file becomes the same tensor in training (the data sets) and in prediction (``predict``'s
input files): both read it with the readers of :mod:`omniperceiver.data.readers`. A file
neither can use (empty, NaN or infinite values, integers of unknown range, a decompression
bomb) is refused with its name, never given a prediction."""

import re

import numpy as np
import pytest
import torch
from data_helpers import sine, write_image, write_wav

from omniperceiver.data import ImageFolder, NpyVideoFolder, WavFolder
from omniperceiver.errors import DatasetError, InputFileError
from omniperceiver.training.inputs import load_input_file

pytest.importorskip("PIL")

RNG = np.random.default_rng(0)
IMAGES = {
    "rgb8.png": RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8),
    "grey8.png": RNG.integers(0, 256, (12, 10), dtype=np.uint8),
    "grey16.png": RNG.integers(0, 65536, (12, 10), dtype=np.uint16),
    "rgba8.png": RNG.integers(0, 256, (12, 10, 4), dtype=np.uint8),
    "rgb8.jpg": RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8),
}


def training_item(dataset, name):
    index = [p.name for p, _ in dataset.samples].index(name)
    return dataset[index][0]


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("size", [(12, 10), (7, 9)])
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_an_image_file_is_the_same_tensor_in_training_and_prediction(tmp_path, name, channels,
                                                                    size):
    path = write_image(tmp_path / "cls" / name, IMAGES[name])
    trained = training_item(ImageFolder(tmp_path, size=size, channels=channels), name)
    predicted = load_input_file(path, {"modality": "image", "image_shape": list(size),
                                       "input_channels": channels})
    assert trained.shape == (*size, channels)
    torch.testing.assert_close(predicted, trained, rtol=0, atol=0)


def test_a_16_bit_png_keeps_its_range_in_prediction(tmp_path):
    path = write_image(tmp_path / "cls" / "grey16.png", IMAGES["grey16.png"])
    x = load_input_file(path, {"modality": "image", "image_shape": [12, 10], "input_channels": 1})
    want = torch.from_numpy(IMAGES["grey16.png"].astype(np.float32) / 65535.0)[..., None]
    torch.testing.assert_close(x, want)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [8000, 16000, 22050])
@pytest.mark.parametrize("sampwidth", [1, 2, 3, 4])
def test_a_wav_file_is_the_same_tensor_in_training_and_prediction(tmp_path, channels, rate,
                                                                  sampwidth):
    samples = np.stack([sine(rate // 4, 440.0 * (c + 1), rate) for c in range(channels)], -1)
    write_wav(tmp_path / "cls" / "clip.wav", samples, rate, sampwidth)
    trained = training_item(WavFolder(tmp_path, sample_rate=16000, num_samples=4000),
                            "clip.wav")
    predicted = load_input_file(tmp_path / "cls" / "clip.wav",
                                {"modality": "audio", "sample_rate": 16000, "num_samples": 4000})
    assert trained.shape == (4000,)
    torch.testing.assert_close(predicted, trained, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_video_array_is_the_same_tensor_in_training_and_prediction(tmp_path, dtype):
    video = RNG.integers(0, 200, (3, 6, 5, 2)).astype(dtype)
    (tmp_path / "cls").mkdir()
    np.save(tmp_path / "cls" / "clip.npy", video)
    trained = training_item(NpyVideoFolder(tmp_path, num_frames=4, size=(4, 4), channels=2),
                            "clip.npy")
    predicted = load_input_file(tmp_path / "cls" / "clip.npy",
                                {"modality": "video", "num_frames": 4, "image_shape": [4, 4],
                                 "input_channels": 2})
    assert trained.shape == (4, 4, 4, 2)
    torch.testing.assert_close(predicted, trained, rtol=0, atol=0)


# --- files predict must refuse rather than answer confidently ------------------------------

IMAGE = {"modality": "image", "image_shape": [4, 4], "input_channels": 1}
AUDIO = {"modality": "audio", "sample_rate": 8000, "num_samples": 100}
POINTS = {"modality": "points", "num_points": 10}
VIDEO = {"modality": "video", "num_frames": 2, "image_shape": [4, 4], "input_channels": 1}


def snapshot(root):
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def refused(path, spec, message):
    """``load_input_file`` raises an InputFileError naming ``path`` and matching ``message``,
    and changes nothing on disk."""
    before = snapshot(path.parent)
    with pytest.raises(InputFileError, match=re.escape(str(path)) + ": " + message):
        load_input_file(path, spec)
    assert snapshot(path.parent) == before


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "int64", "bool",
                                   "float16", "float64"])
def test_pixel_arrays_of_every_integer_width_are_scaled_or_refused_as_in_training(tmp_path,
                                                                                   dtype):
    arr = np.full((4, 4), 3, dtype=dtype)
    np.save(tmp_path / "x.npy", arr)
    np.save(tmp_path / "v.npy", arr[None, ..., None].repeat(2, axis=0))
    if dtype in ("int16", "int32", "int64"):
        message = f"unsupported dtype {dtype} for pixels; expected uint8 .*uint16"
        refused(tmp_path / "x.npy", IMAGE, message)
        refused(tmp_path / "v.npy", VIDEO, message)
        return
    scale = {"uint8": 255, "uint16": 65535}.get(dtype, 1)
    image = load_input_file(tmp_path / "x.npy", IMAGE)
    video = load_input_file(tmp_path / "v.npy", VIDEO)
    torch.testing.assert_close(image, torch.full((4, 4, 1), float(arr.flat[0]) / scale))
    torch.testing.assert_close(video, torch.full((2, 4, 4, 1), float(arr.flat[0]) / scale))


@pytest.mark.parametrize("dtype, value, expected", [
    ("uint8", 192, 0.5), ("int16", -16384, -0.5), ("int32", 1 << 30, 0.5),
    ("float32", 0.25, 0.25)])
def test_audio_arrays_are_scaled_like_wav_samples(tmp_path, dtype, value, expected):
    np.save(tmp_path / "a.npy", np.full(50, value, dtype=dtype))
    x = load_input_file(tmp_path / "a.npy", AUDIO)
    assert x.shape == (100,)
    torch.testing.assert_close(x[:50], torch.full((50,), expected))


@pytest.mark.parametrize("dtype", ["int8", "int64", "uint16"])
def test_audio_arrays_of_unknown_range_are_refused(tmp_path, dtype):
    np.save(tmp_path / "a.npy", np.full(50, 3, dtype=dtype))
    refused(tmp_path / "a.npy", AUDIO, f"unsupported dtype {dtype} for audio samples; expected "
                                       "uint8, int16 or int32")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("spec, shape", [(IMAGE, (4, 4)), (AUDIO, (50,)), (POINTS, (10, 3)),
                                         (VIDEO, (2, 4, 4, 1))])
def test_non_finite_arrays_are_refused(tmp_path, spec, shape, bad):
    arr = np.zeros(shape, dtype=np.float32)
    arr.flat[1] = bad
    np.save(tmp_path / "x.npy", arr)
    refused(tmp_path / "x.npy", spec, r"contains NaN or infinite values \(1 of ")


@pytest.mark.parametrize("spec, shape", [(IMAGE, (0, 4)), (AUDIO, (0,)), (POINTS, (0, 3)),
                                         (VIDEO, (0, 4, 4, 1))])
def test_empty_arrays_are_refused(tmp_path, spec, shape):
    np.save(tmp_path / "x.npy", np.zeros(shape, dtype=np.float32))
    refused(tmp_path / "x.npy", spec, re.escape(f"empty array of shape {shape}"))


def test_an_empty_wav_and_an_empty_mesh_are_refused(tmp_path):
    write_wav(tmp_path / "silence.wav", np.zeros(0))
    refused(tmp_path / "silence.wav", AUDIO, "WAV file contains no audio frames")
    (tmp_path / "nothing.off").write_text("OFF\n0 0 0\n")
    refused(tmp_path / "nothing.off", POINTS, "cannot sample a mesh without faces")


def test_a_folder_given_as_a_file_is_refused(tmp_path):
    (tmp_path / "digits").mkdir()
    with pytest.raises(InputFileError, match="digits: is a folder; this model takes files of "
                                             "images 4x4x1"):
        load_input_file(tmp_path / "digits", IMAGE)


def test_a_decompression_bomb_is_refused_and_skipped_in_training(tmp_path, monkeypatch):
    from PIL import Image

    write_image(tmp_path / "a" / "bomb.png", np.zeros((64, 64), dtype=np.uint8))
    write_image(tmp_path / "a" / "fine.png", np.zeros((4, 4), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # bombs: more than 2000 pixels
    refused(tmp_path / "a" / "bomb.png", IMAGE, "refused to decode a possible decompression bomb")
    with pytest.raises(DatasetError, match="bomb.png: refused to decode"):
        ImageFolder(tmp_path, channels=1, validate=True)[0]
    with pytest.warns(UserWarning, match="skipping unreadable file .*bomb.png"):
        data = ImageFolder(tmp_path, channels=1, on_error="skip")
    assert [p.name for p, _ in data.samples] == ["fine.png"]
