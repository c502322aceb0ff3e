"""Every modality trains end to end: a tiny Perceiver IO behind each input adapter fits a small
fixed batch of real data (synthetic only for text) within a few dozen Adam steps."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from omniperceiver import (
    AttentionSpec,
    ClassificationDecoderConfig,
    EncoderConfig,
    PerceiverIO,
    PerceiverIOConfig,
)
from omniperceiver.adapters import (
    ByteTokenizer,
    ImageAdapter,
    InputAdapter,
    MultimodalAdapter,
    PointCloudAdapter,
    SpectrogramAdapter,
    TextAdapter,
    VideoAdapter,
    WaveformAdapter,
)

data = pytest.importorskip("omniperceiver.data")

BATCH = 20
needs_espeak = pytest.mark.skipif(not data.espeak_available(),
                                  reason="espeak-ng is needed to synthesise spoken digits")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread is as fast, and far faster on a busy machine (where
    threads of a parallel region wait for each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def first_items(dataset, n: int = BATCH):
    """A fixed batch: the first ``n`` items stacked (dict items stacked per modality)."""
    xs, ys = zip(*(dataset[i] for i in range(n)), strict=True)
    if isinstance(xs[0], dict):
        x = {k: torch.stack([item[k] for item in xs]) for k in xs[0]}
    else:
        x = torch.stack(xs)
    return x, torch.tensor(ys)


def fit(adapter: InputAdapter, x, y, num_classes: int, *, mask=None, steps: int = 40,
        lr: float = 3e-3) -> tuple[float, float]:
    """Trains a tiny Perceiver IO classifier on (x, y); returns the first training loss and the
    loss of the trained model in eval mode."""
    torch.manual_seed(0)
    config = PerceiverIOConfig(
        input_channels=adapter.num_channels, input_axis=1, position=None,
        encoder=EncoderConfig(num_latents=16, latent_dim=32, num_blocks=1,
                              self_attends_per_block=1, cross_attend=AttentionSpec(heads=1),
                              self_attend=AttentionSpec(heads=2)),
        decoder=ClassificationDecoderConfig(num_classes=num_classes))
    model = PerceiverIO(config, input_adapter=adapter)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        loss = F.cross_entropy(model(x, mask), y)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        return first, F.cross_entropy(model(x, mask), y).item()


def assert_learns(first: float, last: float) -> None:
    assert last < 0.5 * first, f"loss went from {first:.3f} to {last:.3f}"


@pytest.fixture(scope="module")
def mnist_batch():
    return first_items(data.MNIST("train"))


@pytest.fixture(scope="module")
def spoken_batch():
    dataset = data.SpokenDigits("train", num_samples=BATCH)
    return first_items(dataset), dataset.sample_rate


def test_image_pixels_trains():
    x, y = first_items(data.SklearnDigits("train"))  # (20, 8, 8, 1) in [0, 1]
    adapter = ImageAdapter(image_shape=(8, 8), input_channels=1, mode="pixels", num_bands=8)
    assert_learns(*fit(adapter, x, y, 10, steps=60))


@pytest.mark.parametrize("mode,options", [
    ("patches", {"patch_size": 4}),
    ("conv", {"conv_channels": 16}),
])
def test_image_patches_and_conv_train(mnist_batch, mode, options):
    x, y = mnist_batch  # (20, 28, 28, 1) in [0, 1]
    adapter = ImageAdapter(image_shape=(28, 28), input_channels=1, mode=mode, num_bands=8,
                           **options)
    assert_learns(*fit(adapter, x, y, 10))


def test_video_trains():
    x, y = first_items(data.MovingDigits("train", num_samples=BATCH, num_frames=4, size=32))
    adapter = VideoAdapter(video_shape=(4, 32, 32), input_channels=1, patch_shape=(2, 8, 8),
                           num_bands=8)
    assert_learns(*fit(adapter, x, y, 10))


@needs_espeak
def test_waveform_trains(spoken_batch):
    (x, y), _ = spoken_batch  # (20, 16000)
    adapter = WaveformAdapter(max_samples=x.shape[1], samples_per_patch=160, num_bands=16)
    assert_learns(*fit(adapter, x, y, 10))


@needs_espeak
def test_spectrogram_trains(spoken_batch):
    (x, y), sample_rate = spoken_batch
    adapter = SpectrogramAdapter(max_samples=x.shape[1], sample_rate=sample_rate, n_mels=32,
                                 num_bands=16)
    assert_learns(*fit(adapter, x, y, 10))


def test_point_cloud_trains():
    dataset = data.ProceduralPointClouds(num_samples=24, num_points=256, normals=True)
    x, y = first_items(dataset, 24)  # (24, 256, 6): xyz (up to ~1.3) and unit normals
    x = torch.cat([x[..., :3] / 1.5, x[..., 3:]], dim=-1)  # coordinates into [-1, 1]
    adapter = PointCloudAdapter(num_features=3, num_bands=8, max_resolution=32.0)
    assert_learns(*fit(adapter, x, y, dataset.num_classes))


def test_text_trains():
    colours = ["red", "green", "blue", "yellow"]
    filler = ["the", "a", "car", "is", "very", "small", "house", "sky", "today", "it"]
    rng = random.Random(0)
    texts, labels = [], []
    for i in range(BATCH):
        words = rng.sample(filler, 5)
        words.insert(rng.randrange(6), colours[i % 4])
        texts.append(" ".join(words))
        labels.append(i % 4)
    ids, mask = ByteTokenizer().encode(texts)
    adapter = TextAdapter(num_channels=32, max_length=64)
    assert_learns(*fit(adapter, ids, torch.tensor(labels), 4, mask=mask))


def test_multimodal_image_video_trains(mnist_batch):
    """An MNIST digit and a moving-digits clip of the same class, with video dropout."""
    images, labels = mnist_batch
    video = data.MovingDigits("train", num_samples=200, num_frames=4, size=32)
    by_class = {}
    for i in range(len(video)):
        clip, label = video[i]
        by_class.setdefault(label, clip)
    x = {"image": images, "video": torch.stack([by_class[int(c)] for c in labels])}
    adapter = MultimodalAdapter({
        "image": ImageAdapter(image_shape=(28, 28), input_channels=1, mode="patches",
                              patch_size=4, num_bands=8),
        "video": VideoAdapter(video_shape=(4, 32, 32), input_channels=1, num_bands=8),
    }, modality_dropout={"video": 0.3})
    assert_learns(*fit(adapter, x, labels, 10))


@needs_espeak
def test_audiovisual_trains():
    dataset = data.AudioVisualDigits("train", num_samples=BATCH, num_clips=20)
    x, y = first_items(dataset)  # {"image": (20, 28, 28, 1), "audio": (20, 16000)}
    adapter = MultimodalAdapter({
        "image": ImageAdapter(image_shape=(28, 28), input_channels=1, mode="patches",
                              patch_size=4, num_bands=8),
        "audio": SpectrogramAdapter(max_samples=x["audio"].shape[1],
                                    sample_rate=dataset.sample_rate, n_mels=32, num_bands=8),
    })
    assert_learns(*fit(adapter, x, y, 10))
