"""A file becomes the same tensor in training (the data sets) and in prediction (``predict``'s
input files): both read it with the readers of :mod:`omniperceiver.data.readers`."""

import numpy as np
import pytest
import torch
from data_helpers import sine, write_image, write_wav

from omniperceiver.data import ImageFolder, NpyVideoFolder, WavFolder
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
    predicted = load_input_file(path, {"modality": "image", "image_size": list(size),
                                       "channels": channels})
    assert trained.shape == (*size, channels)
    torch.testing.assert_close(predicted, trained, rtol=0, atol=0)


def test_a_16_bit_png_keeps_its_range_in_prediction(tmp_path):
    path = write_image(tmp_path / "cls" / "grey16.png", IMAGES["grey16.png"])
    x = load_input_file(path, {"modality": "image", "image_size": [12, 10], "channels": 1})
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
                                {"modality": "video", "num_frames": 4, "image_size": [4, 4],
                                 "channels": 2})
    assert trained.shape == (4, 4, 4, 2)
    torch.testing.assert_close(predicted, trained, rtol=0, atol=0)
