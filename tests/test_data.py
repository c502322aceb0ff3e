"""Tests for omniperceiver.data: every dataset offline, on real files written to tmp_path."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data_helpers as H  # noqa: E402

from omniperceiver.data import (  # noqa: E402
    MNIST,
    SHAPE_CLASSES,
    AudioVisualDigits,
    DatasetError,
    EspeakNotFoundError,
    ImageFolder,
    Mesh,
    ModelNetFolder,
    MovingDigits,
    NpyVideoFolder,
    OFFError,
    ProceduralPointClouds,
    SklearnDigits,
    SpokenDigits,
    WavFolder,
    espeak_available,
    espeak_missing_reason,
    fix_length,
    load_mnist_arrays,
    normalize_points,
    parse_off,
    read_off,
    read_wav,
    resample,
    sample_surface,
    stratified_split,
)
from omniperceiver.data.mnist import mnist_split_indices  # noqa: E402
from omniperceiver.data.spoken import synthesis_settings  # noqa: E402

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_classification_item(x, label, shape, num_classes, lo=0.0, hi=1.0):
    assert isinstance(label, int) and 0 <= label < num_classes
    assert x.dtype == torch.float32
    assert tuple(x.shape) == tuple(shape)
    assert float(x.min()) >= lo and float(x.max()) <= hi


# ------------------------------------------------------------------------------------------
# MNIST / scikit-learn digits
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_train():
    return MNIST("train")


def test_mnist_counts_shapes_and_balance(mnist_train):
    test = MNIST("test")
    assert (len(mnist_train), len(test), len(MNIST("all"))) == (4000, 1000, 5000)
    assert mnist_train.classes == [str(d) for d in range(10)] and mnist_train.num_classes == 10
    for ds in (mnist_train, test):
        for i in (0, len(ds) // 2, len(ds) - 1):
            x, y = ds[i]
            _check_classification_item(x, y, (28, 28, 1), 10)
        assert ds.images.dtype == torch.float32 and ds.images.max() == 1.0
    assert np.bincount(mnist_train.targets.numpy()).tolist() == [400] * 10
    assert np.bincount(test.targets.numpy()).tolist() == [100] * 10
    # train and test are disjoint and together cover all 5,000 digits
    tr, te = set(mnist_train.indices.tolist()), set(test.indices.tolist())
    assert not tr & te and len(tr | te) == 5000


def test_mnist_split_is_fixed_and_arrays_are_cached(mnist_train):
    again = MNIST("train")
    assert torch.equal(again.images, mnist_train.images)
    assert torch.equal(again.targets, mnist_train.targets)
    assert load_mnist_arrays() is load_mnist_arrays()  # module-level cache
    images, labels = load_mnist_arrays()
    i = int(mnist_train.indices[7])
    assert torch.equal(mnist_train[7][0][..., 0], torch.from_numpy(images[i] / 255.0).float())
    assert mnist_train[7][1] == int(labels[i])


def test_permuted_mnist_is_one_fixed_permutation(mnist_train):
    p1, p2 = MNIST("train", permuted=True), MNIST("test", permuted=True)
    perm = p1.permutation
    assert torch.equal(perm, p2.permutation)  # same across instances and splits
    assert sorted(perm.tolist()) == list(range(784))
    assert not torch.equal(perm, torch.arange(784))
    assert not torch.equal(MNIST("test", permuted=True, permutation_seed=1).permutation, perm)
    for i in (0, 123, 3999):
        x, y = p1[i]
        orig, y0 = mnist_train[i]
        assert y == y0 and x.shape == (28, 28, 1)
        assert not torch.equal(x, orig)
        # the same permutation maps every image, and permuting back recovers the original
        assert torch.equal(orig.reshape(-1)[perm], x.reshape(-1))
        assert torch.equal(x.reshape(-1)[p1.inverse_permutation].reshape(28, 28, 1), orig)


def test_sklearn_digits_split():
    train, test, full = SklearnDigits("train"), SklearnDigits("test"), SklearnDigits("all")
    assert (len(train), len(test), len(full)) == (1437, 360, 1797)
    x, y = train[0]
    _check_classification_item(x, y, (8, 8, 1), 10)
    assert float(full.images.max()) == 1.0
    assert not set(train.indices.tolist()) & set(test.indices.tolist())
    counts = np.bincount(test.targets.numpy(), minlength=10)
    assert counts.sum() == 360 and counts.min() >= 35  # stratified (~36 per class)
    assert torch.equal(SklearnDigits("test").images, test.images)


@FAST
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=60),
    frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_stratified_split_properties(labels, frac, seed):
    labels = np.array(labels)
    num_test = int(round(frac * len(labels)))
    train, test = stratified_split(labels, num_test, seed)
    assert len(test) == num_test and len(train) == len(labels) - num_test
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))
    for c in np.unique(labels):
        share = np.sum(labels[test] == c)
        assert abs(share - np.sum(labels == c) * num_test / len(labels)) < 1.0 + 1e-9
    again = stratified_split(labels, num_test, seed)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


# ------------------------------------------------------------------------------------------
# OFF reader and surface sampling
# ------------------------------------------------------------------------------------------


def test_read_off_glued_header_comments_and_quads(tmp_path):
    path = H.write_off(
        tmp_path / "cube.off", H.CUBE_VERTICES, H.CUBE_QUADS, glued=True, comments=True
    )
    assert path.read_text().startswith("OFF8 6 0\n")
    mesh = read_off(path)
    assert mesh.vertices.shape == (8, 3) and mesh.faces.shape == (12, 3)  # 6 quads -> 12 tris
    np.testing.assert_allclose(mesh.vertices, H.CUBE_VERTICES)
    # fan triangulation of quad [0, 3, 2, 1] -> (0, 3, 2), (0, 2, 1)
    assert mesh.faces[:2].tolist() == [[0, 3, 2], [0, 2, 1]]
    areas = 0.5 * np.linalg.norm(
        np.cross(
            *(mesh.vertices[mesh.faces[:, k]] - mesh.vertices[mesh.faces[:, 0]] for k in (1, 2))
        ),
        axis=1,
    )
    assert areas.sum() == pytest.approx(6.0)


def test_parse_off_variants():
    glued = parse_off("OFF490 1 0\n" + "0 0 0\n" * 489 + "1 0 0\n3 0 1 488\n")
    assert glued.vertices.shape == (490, 3) and glued.faces.tolist() == [[0, 1, 488]]
    # lower-case header, extra per-vertex values (colours) and per-face colours, pentagon
    text = "off\n5 1 0\n0 0 0 255 0 0\n1 0 0 1 1 1\n1 1 0 0 0 0\n0.5 2 0 1 1 1\n0 1 0 9 9 9\n"
    text += "5 0 1 2 3 4 255 0 0\n"
    mesh = parse_off(text)
    assert mesh.vertices[3].tolist() == [0.5, 2.0, 0.0]
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4]]
    coff = parse_off("COFF 3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")  # counts on the header line
    assert coff.faces.shape == (1, 3)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("PLY\n3 1 0\n", "expected an 'OFF' header"),
        ("OFF\n3 1\n0 0 0\n1 0 0\n", "truncated"),
        ("OFF\n3 1 0\n0 0 0\n1 0 x\n0 1 0\n3 0 1 2\n", "non-numeric"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "out of range"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "face 0"),
        ("OFF\nthree 1 0\n", "counts line"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1\n3 0 1 2\n", "vertex 2"),
        ("OFF\n3 1 0\n0 0 0\n1 0 nan\n0 1 0\n3 0 1 2\n", "NaN"),
    ],
)
def test_off_errors_name_the_file(tmp_path, text, needle):
    path = tmp_path / "bad.off"
    path.write_text(text)
    with pytest.raises(OFFError) as info:
        read_off(path)
    assert str(path) in str(info.value) and needle in str(info.value)
    assert isinstance(info.value, DatasetError) and isinstance(info.value, ValueError)


def test_read_off_binary_garbage(tmp_path):
    path = H.write_garbage(tmp_path / "x.off", bytes(range(256)))
    with pytest.raises(OFFError, match="x.off"):
        read_off(path)


finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


@FAST
@given(
    vertices=st.lists(st.tuples(finite, finite, finite), min_size=3, max_size=12),
    data=st.data(),
    glued=st.booleans(),
    comments=st.booleans(),
)
def test_off_round_trip(vertices, data, glued, comments):
    n = len(vertices)
    polygon = st.lists(st.integers(0, n - 1), min_size=3, max_size=6)
    faces = data.draw(st.lists(polygon, min_size=1, max_size=8))
    mesh = parse_off(H.off_text(vertices, faces, glued=glued, comments=comments))
    np.testing.assert_array_equal(mesh.vertices, np.array(vertices, dtype=np.float64))
    expected = [[f[0], f[k], f[k + 1]] for f in faces for k in range(1, len(f) - 1)]
    assert mesh.faces.tolist() == expected


def test_cube_samples_lie_on_the_faces():
    mesh = parse_off(H.off_text(H.CUBE_VERTICES, H.CUBE_QUADS))
    pts = sample_surface(mesh, 5000, np.random.default_rng(0))
    assert pts.shape == (5000, 3)
    assert np.all(np.abs(pts) <= 0.5 + 1e-12)
    on_face = np.isclose(np.abs(pts), 0.5, atol=1e-12)
    assert on_face.any(axis=1).all()  # every point lies on some face
    # uniform over the 6 equal faces: each face gets about 1/6 of the points
    axis = np.argmax(on_face, axis=1)
    face = 2 * axis + (pts[np.arange(len(pts)), axis] > 0)
    counts = np.bincount(face, minlength=6)
    assert counts.sum() == 5000 and np.all(np.abs(counts - 5000 / 6) < 120)


def test_sampling_is_area_weighted_and_uniform():
    # two triangles with areas 1 and 3 (both in the z=0 plane)
    mesh = Mesh(
        np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [10, 0, 0], [13, 0, 0], [10, 2, 0]], float),
        np.array([[0, 1, 2], [3, 4, 5]]),
    )
    pts = sample_surface(mesh, 40000, np.random.default_rng(1))
    frac_big = np.mean(pts[:, 0] >= 10)
    assert frac_big == pytest.approx(0.75, abs=0.015)
    small = pts[pts[:, 0] < 10]
    assert np.all(small[:, 0] / 1 + small[:, 1] / 2 <= 1 + 1e-12) and np.all(small >= -1e-12)
    # uniform inside the triangle: the mean is the centroid
    np.testing.assert_allclose(small[:, :2].mean(0), [1 / 3, 2 / 3], atol=0.02)
    points, normals = sample_surface(mesh, 10, 0, return_normals=True)
    np.testing.assert_allclose(np.abs(normals), np.tile([0, 0, 1.0], (10, 1)))


@FAST
@given(
    tri=st.lists(st.tuples(finite, finite, finite), min_size=3, max_size=3),
    seed=st.integers(0, 1000),
)
def test_samples_inside_random_triangle(tri, seed):
    v = np.array(tri)
    area = 0.5 * np.linalg.norm(np.cross(v[1] - v[0], v[2] - v[0]))
    if area < 1e-3:
        return
    pts = sample_surface(Mesh(v, np.array([[0, 1, 2]])), 64, seed)
    # barycentric coordinates by least squares must be non-negative and sum to 1
    m = np.stack([v[1] - v[0], v[2] - v[0]], axis=1)
    uv = np.linalg.lstsq(m, (pts - v[0]).T, rcond=None)[0].T
    resid = pts - (v[0] + uv @ m.T)
    assert np.abs(resid).max() < 1e-6 * (1 + np.abs(v).max())
    assert uv.min() > -1e-6 and uv.sum(1).max() < 1 + 1e-6
    assert np.array_equal(pts, sample_surface(Mesh(v, np.array([[0, 1, 2]])), 64, seed))


def test_sampling_rejects_degenerate_meshes():
    flat = Mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="zero surface area"):
        sample_surface(flat, 10, 0)
    with pytest.raises(ValueError, match="without faces"):
        sample_surface(Mesh(np.zeros((3, 3)), np.zeros((0, 3), int)), 10, 0)


def test_normalize_points():
    pts = np.random.default_rng(0).normal(5.0, 3.0, size=(100, 3))
    out = normalize_points(pts)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    assert np.linalg.norm(out, axis=1).max() == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------
# ModelNetFolder
# ------------------------------------------------------------------------------------------


def _modelnet(root: Path, split_level: bool = True) -> Path:
    for cls, (v, f) in {
        "cube": (H.CUBE_VERTICES, H.CUBE_QUADS),
        "tetra": (H.TETRA_VERTICES, H.TETRA_FACES),
    }.items():
        for split, n in (("train", 3), ("test", 1)):
            folder = root / cls / split if split_level else root / cls
            for i in range(n):
                H.write_off(folder / f"{cls}_{split}_{i}.off", v, f, glued=(i % 2 == 0))
    return root


def test_modelnet_folder(tmp_path):
    root = _modelnet(tmp_path / "mn")
    train = ModelNetFolder(root, split="train", num_points=256)
    test = ModelNetFolder(root, split="test", num_points=256)
    assert train.classes == ["cube", "tetra"] and train.num_classes == 2
    assert (len(train), len(test)) == (6, 2)
    assert sorted(train.targets) == [0, 0, 0, 1, 1, 1]
    for i in range(len(train)):
        x, y = train[i]
        assert x.shape == (256, 3) and x.dtype == torch.float32 and y in (0, 1)
        assert torch.allclose(x.mean(0), torch.zeros(3), atol=1e-5)
        assert x.norm(dim=1).max().item() == pytest.approx(1.0, abs=1e-5)
    x0, _ = train[0]
    cube = x0.numpy().astype(np.float64)
    # normalisation is affine, so every cube sample still lies on a face of the bounding box
    on_box = np.isclose(cube, cube.min(0), atol=1e-5) | np.isclose(cube, cube.max(0), atol=1e-5)
    assert on_box.any(axis=1).all()
    # deterministic per item given the seed, different for another seed / item
    assert torch.equal(train[0][0], ModelNetFolder(root, num_points=256)[0][0])
    assert not torch.equal(train[0][0], train[1][0])
    assert not torch.equal(x0, ModelNetFolder(root, num_points=256, seed=1)[0][0])
    xn, _ = ModelNetFolder(root, num_points=64, normals=True)[0]
    assert xn.shape == (64, 6)
    torch.testing.assert_close(xn[:, 3:].norm(dim=1), torch.ones(64))


def test_modelnet_without_split_level_and_missing_split(tmp_path):
    flat = _modelnet(tmp_path / "flat", split_level=False)
    ds = ModelNetFolder(flat, split=None, num_points=32)
    assert len(ds) == 8 and ds[0][0].shape == (32, 3)
    with pytest.raises(DatasetError, match="no 'train' sub-folder"):
        ModelNetFolder(flat, split="train")


def test_modelnet_corrupt_file_raise_and_skip(tmp_path):
    root = _modelnet(tmp_path / "mn")
    bad = root / "cube" / "train" / "zz_broken.off"
    bad.write_text("OFF\n8 12 0\n0 0 0\n")
    ds = ModelNetFolder(root, num_points=16)  # lazy: construction does not parse
    idx = [str(p) for p, _ in ds.samples].index(str(bad))
    with pytest.raises(DatasetError, match="zz_broken.off"):
        ds[idx]
    with pytest.raises(DatasetError, match="zz_broken.off"):
        ModelNetFolder(root, num_points=16, validate=True)
    with pytest.warns(UserWarning, match="zz_broken.off"):
        skipped = ModelNetFolder(root, num_points=16, on_error="skip")
    assert len(skipped) == 6 and all(p != bad for p, _ in skipped.samples)


# ------------------------------------------------------------------------------------------
# ImageFolder
# ------------------------------------------------------------------------------------------


def _images(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "cat/a.png": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
        "cat/b.png": rng.integers(0, 256, (6, 5), dtype=np.uint8),  # greyscale
        "cat/sub/c.png": rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),  # RGBA, nested
        "dog/d.bmp": rng.integers(0, 256, (7, 9, 3), dtype=np.uint8),
        "dog/e.jpg": np.full((8, 8, 3), 200, dtype=np.uint8),
    }
    for rel, arr in arrays.items():
        H.write_image(root / rel, arr)
    (root / "dog" / "notes.txt").write_text("ignored: not an image extension")
    return arrays


def test_image_folder_reads_real_images(tmp_path):
    arrays = _images(tmp_path)
    ds = ImageFolder(tmp_path)
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2 and len(ds) == 5
    paths = [p.relative_to(tmp_path).as_posix() for p, _ in ds.samples]
    assert paths == ["cat/a.png", "cat/b.png", "cat/sub/c.png", "dog/d.bmp", "dog/e.jpg"]
    x, y = ds[0]
    assert y == 0 and x.shape == (6, 5, 3) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.from_numpy(arrays["cat/a.png"] / 255.0).float())
    grey, _ = ds[1]
    assert grey.shape == (6, 5, 3) and torch.equal(grey[..., 0], grey[..., 2])
    assert ds[3][0].shape == (7, 9, 3) and ds[3][1] == 1
    assert ds[4][0].mean().item() == pytest.approx(200 / 255, abs=0.02)  # lossy JPEG
    g = ImageFolder(tmp_path, channels=1)[1][0]
    torch.testing.assert_close(g[..., 0], torch.from_numpy(arrays["cat/b.png"] / 255.0).float())
    resized = ImageFolder(tmp_path, size=(4, 3), channels=1)
    for i in range(len(resized)):
        x, _ = resized[i]
        assert x.shape == (4, 3, 1) and 0.0 <= x.min() and x.max() <= 1.0
    assert ImageFolder(tmp_path, size=10, channels=4)[2][0].shape == (10, 10, 4)


def test_image_folder_16_bit(tmp_path):
    arr = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    H.write_image(tmp_path / "a" / "x.png", arr)
    x, _ = ImageFolder(tmp_path, channels=1)[0]
    torch.testing.assert_close(x[..., 0], torch.from_numpy(arr / 65535.0).float())


def test_image_folder_corrupt_file(tmp_path):
    _images(tmp_path)
    bad = H.write_garbage(tmp_path / "dog" / "zz_corrupt.png")
    ds = ImageFolder(tmp_path)
    assert len(ds) == 6
    with pytest.raises(DatasetError) as info:
        ds[5]
    assert str(bad) in str(info.value)
    with pytest.raises(DatasetError, match="zz_corrupt.png"):
        ImageFolder(tmp_path, validate=True)
    with pytest.warns(UserWarning, match="zz_corrupt.png"):
        skipped = ImageFolder(tmp_path, on_error="skip")
    assert len(skipped) == 5 and all(skipped[i][0].ndim == 3 for i in range(5))
    # a truncated PNG (valid header, missing data) is also caught
    good = (tmp_path / "cat" / "a.png").read_bytes()
    H.write_garbage(tmp_path / "cat" / "trunc.png", good[: len(good) // 2])
    with pytest.raises(DatasetError, match="trunc.png"):
        ImageFolder(tmp_path, validate=True)


def test_folder_structure_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as info:
        ImageFolder(empty)
    assert str(empty) in str(info.value) and "empty" in str(info.value)
    writers = {
        ImageFolder: lambda p: H.write_image(p.with_suffix(".png"), np.zeros((2, 2), np.uint8)),
        WavFolder: lambda p: H.write_wav(p.with_suffix(".wav"), np.zeros(10)),
        NpyVideoFolder: lambda p: np.save(p.with_suffix(".npy"), np.zeros((1, 2, 2, 1))),
        ModelNetFolder: lambda p: H.write_off(
            p.parent / "train" / "x.off", H.TETRA_VERTICES, H.TETRA_FACES
        ),
    }
    for cls, write in writers.items():
        root = tmp_path / cls.__name__
        (root / "a").mkdir(parents=True)
        write(root / "a" / "x")
        (root / "b" / "train").mkdir(parents=True)
        (root / "b" / "train" / "readme.txt").write_text("nothing usable here")
        with pytest.raises(DatasetError) as info:
            cls(root)
        assert str(root / "b") in str(info.value) and "contains no" in str(info.value)
    root = tmp_path / "ImageFolder"
    # a class whose every file is unreadable is reported too when skipping
    H.write_garbage(root / "b" / "broken.png")
    with pytest.warns(UserWarning, match="broken.png"):
        with pytest.raises(DatasetError, match="no usable"):
            ImageFolder(root, on_error="skip")
    with pytest.raises(ValueError, match="on_error"):
        ImageFolder(root, on_error="ignore")


# ------------------------------------------------------------------------------------------
# WAV reader and WavFolder
# ------------------------------------------------------------------------------------------


@FAST
@given(
    sampwidth=st.sampled_from([1, 2, 3, 4]),
    channels=st.integers(1, 3),
    data=st.data(),
)
def test_wav_round_trip_over_bit_depths(tmp_path_factory, sampwidth, channels, data):
    lo, hi = H.int_range(sampwidth)
    frames = data.draw(st.integers(1, 40))
    ints = np.array(
        data.draw(
            st.lists(st.integers(lo, hi), min_size=frames * channels, max_size=frames * channels)
        )
    ).reshape(frames, channels)
    path = tmp_path_factory.mktemp("wav") / "x.wav"
    H.write_wav_ints(path, ints, 8000, sampwidth)
    out, rate = read_wav(path)
    assert rate == 8000 and out.dtype == np.float32 and out.shape == (frames, channels)
    np.testing.assert_allclose(out, H.ints_to_float(ints, sampwidth), rtol=0, atol=1e-7)
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_wav_extremes_map_to_unit_range(tmp_path):
    for w in (1, 2, 3, 4):
        lo, hi = H.int_range(w)
        out, _ = read_wav(H.write_wav_ints(tmp_path / f"{w}.wav", np.array([lo, hi]), 100, w))
        assert out[0, 0] == -1.0 and 0.99 < out[1, 0] <= 1.0


def test_resample_and_fix_length():
    x = torch.from_numpy(H.sine(800, 50.0, 8000)).float()
    y = resample(x, 8000, 16000)
    assert y.shape == (1600,)
    torch.testing.assert_close(y[::2][5:-5], x[5:-5], atol=0.01, rtol=0)
    assert resample(x.reshape(-1, 1).repeat(1, 2), 8000, 4000).shape == (400, 2)
    assert fix_length(x, 1000).shape == (1000,) and fix_length(x, 1000)[800:].abs().sum() == 0
    assert torch.equal(fix_length(x, 10), x[:10])


def _wavs(root: Path) -> None:
    H.write_wav(root / "hi" / "a.wav", H.sine(800, 440), 8000, 2)
    H.write_wav(root / "hi" / "b.wav", np.stack([H.sine(400), -H.sine(400)], 1), 8000, 3)
    H.write_wav(root / "lo" / "c.wav", H.sine(1200, 110), 8000, 1)
    H.write_wav(root / "lo" / "d.wav", H.sine(600, 110), 8000, 4)


def test_wav_folder(tmp_path):
    _wavs(tmp_path)
    ds = WavFolder(tmp_path)
    assert ds.classes == ["hi", "lo"] and ds.sample_rate == 8000 and len(ds) == 4
    x, y = ds[0]
    assert y == 0 and x.shape == (800,) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.from_numpy(H.sine(800)).float(), atol=1e-4, rtol=0)
    mixed, _ = ds[1]  # stereo with opposite channels mixes down to silence
    assert mixed.abs().max() < 1e-6
    stereo, _ = WavFolder(tmp_path, mono=False)[1]
    assert stereo.shape == (400, 2)
    fixed = WavFolder(tmp_path, sample_rate=16000, num_samples=1000)
    assert fixed.sample_rate == 16000
    for i in range(4):
        x, _ = fixed[i]
        assert x.shape == (1000,) and x.abs().max() <= 1.0
    # d.wav: 600 samples at 8 kHz -> 1200 at 16 kHz -> cropped to 1000 ...
    torch.testing.assert_close(
        fixed[3][0],
        resample(torch.from_numpy(H.sine(600, 110)).float(), 8000, 16000)[:1000],
        atol=1e-4,
        rtol=0,
    )
    padded = WavFolder(tmp_path, num_samples=1000)[3][0]  # ... or zero-padded at 8 kHz
    assert padded[:600].abs().max() > 0.4 and padded[600:].abs().sum() == 0


def test_wav_folder_errors(tmp_path):
    _wavs(tmp_path)
    H.write_wav(tmp_path / "lo" / "e.wav", H.sine(100), 16000, 2)
    with pytest.raises(DatasetError, match="different sample rates"):
        WavFolder(tmp_path)
    assert len(WavFolder(tmp_path, sample_rate=8000)) == 5
    bad = H.write_garbage(tmp_path / "lo" / "zz_bad.wav", b"RIFF\x00\x00\x00\x00WAVEjunk")
    ds = WavFolder(tmp_path, sample_rate=8000)
    with pytest.raises(DatasetError) as info:
        ds[len(ds) - 1]
    assert str(bad) in str(info.value)
    with pytest.warns(UserWarning, match="zz_bad.wav"):
        skipped = WavFolder(tmp_path, sample_rate=8000, on_error="skip")
    assert len(skipped) == 5
    # truncated data chunk: the header promises more frames than are present
    good = (tmp_path / "hi" / "a.wav").read_bytes()
    trunc = H.write_garbage(tmp_path / "t" / "trunc.wav", good[:200])
    with pytest.raises(DatasetError, match="trunc.wav"):
        read_wav(trunc)


# ------------------------------------------------------------------------------------------
# NpyVideoFolder
# ------------------------------------------------------------------------------------------


def test_npy_video_folder(tmp_path):
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    f32 = rng.random((3, 6, 5, 3)).astype(np.float64)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "v1.npy", u8)
    np.save(tmp_path / "b" / "v2.npy", f32)
    ds = NpyVideoFolder(tmp_path)
    assert ds.classes == ["a", "b"] and len(ds) == 2
    x, y = ds[0]
    assert y == 0 and x.shape == (4, 6, 5, 3) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.from_numpy(u8 / 255.0).float())
    torch.testing.assert_close(ds[1][0], torch.from_numpy(f32).float())
    fixed = NpyVideoFolder(tmp_path, num_frames=4, size=(3, 2))
    assert fixed[0][0].shape == fixed[1][0].shape == (4, 3, 2, 3)
    assert fixed[1][0][3].abs().sum() == 0  # zero-padded frame


def test_npy_video_wrong_shape_and_corrupt(tmp_path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    np.save(root / "a" / "ok.npy", np.zeros((2, 4, 4, 1), np.uint8))
    np.save(root / "a" / "flat.npy", np.zeros((4, 4), np.uint8))
    ds = NpyVideoFolder(root)
    flat_index = [p.name for p, _ in ds.samples].index("flat.npy")
    with pytest.raises(DatasetError) as info:
        ds[flat_index]
    msg = str(info.value)
    assert "flat.npy" in msg and "(T, H, W, C)" in msg and "(4, 4)" in msg
    rgb_root = tmp_path / "rgb"
    (rgb_root / "a").mkdir(parents=True)
    np.save(rgb_root / "a" / "grey.npy", np.zeros((2, 4, 4, 1), np.uint8))
    with pytest.raises(DatasetError, match=r"expected shape \(T, H, W, 3\).*\(2, 4, 4, 1\)"):
        NpyVideoFolder(rgb_root, channels=3, validate=True)
    H.write_garbage(root / "a" / "junk.npy")
    with pytest.warns(UserWarning) as record:
        skipped = NpyVideoFolder(root, on_error="skip")
    assert len(skipped) == 1 and skipped[0][0].shape == (2, 4, 4, 1)
    warned = " ".join(str(w.message) for w in record)
    assert "flat.npy" in warned and "junk.npy" in warned


# ------------------------------------------------------------------------------------------
# Generated datasets
# ------------------------------------------------------------------------------------------


def test_procedural_point_clouds_shapes_and_labels():
    ds = ProceduralPointClouds(48, num_points=128)
    assert len(ds) == 48 and ds.num_classes == len(ds.classes) == len(SHAPE_CLASSES) >= 10
    labels = []
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (128, 3) and x.dtype == torch.float32 and torch.isfinite(x).all()
        assert 0 <= y < ds.num_classes
        labels.append(y)
    assert np.bincount(labels).tolist() == [4] * 12
    xn, _ = ProceduralPointClouds(4, num_points=50, normals=True)[1]
    assert xn.shape == (50, 6)
    torch.testing.assert_close(xn[:, 3:].norm(dim=1), torch.ones(50))


def test_procedural_point_clouds_are_deterministic():
    a = ProceduralPointClouds(30, num_points=64, seed=3)
    b = ProceduralPointClouds(30, num_points=64, seed=3)
    order = [29, 0, 7, 7, 15]
    for i in order:  # identical regardless of instance or access order
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    assert not torch.equal(a[0][0], ProceduralPointClouds(30, num_points=64, seed=4)[0][0])
    test = ProceduralPointClouds(30, num_points=64, seed=3, split="test")
    assert not torch.equal(a[0][0], test[0][0])


def test_procedural_sphere_points_lie_on_a_sphere():
    ds = ProceduralPointClouds(12, num_points=500, noise=0.0, scale_range=(0.8, 0.8))
    assert ds.classes[0] == "sphere"
    x, y = ds[0]
    r = x.norm(dim=1)
    assert y == 0 and torch.allclose(r, torch.full_like(r, 0.8), atol=0.8 * 0.01)
    cube, label = ds[ds.classes.index("cube")]
    assert ds.classes[label] == "cube"
    rot = cube.numpy().astype(np.float64)
    # the rotated cube still has 6 planar faces: the spread of |projections| on its axes
    # is bounded by half its side (0.6 * 0.8)
    assert np.linalg.norm(rot, axis=1).max() <= 0.6 * 0.8 * np.sqrt(3) + 1e-5


def test_moving_digits():
    ds = MovingDigits("test", num_frames=6, size=32)
    assert len(ds) == 1000 and ds.num_classes == 10
    mnist_test = MNIST("test")
    for i in (0, 1, 999):
        x, y = ds[i]
        _check_classification_item(x, y, (6, 32, 32, 1), 10)
        assert y == mnist_test[i][1]  # built from the test digits, in order
        sums = x.sum(dim=(1, 2, 3))
        torch.testing.assert_close(sums, sums[:1].expand(6))  # whole digit in every frame
        assert not all(torch.equal(x[0], x[t]) for t in range(1, 6))  # it moves
    assert torch.equal(ds[5][0], MovingDigits("test", num_frames=6, size=32)[5][0])
    assert not torch.equal(ds[5][0], MovingDigits("test", num_frames=6, seed=1)[5][0])
    big = MovingDigits("train", num_samples=3, num_frames=2, size=64)
    assert len(big) == 3 and big[2][0].shape == (2, 64, 64, 1) and big.digit_size == 28
    assert set(mnist_split_indices("test").tolist()).isdisjoint(mnist_split_indices("train"))


# ------------------------------------------------------------------------------------------
# Spoken digits (espeak-ng)
# ------------------------------------------------------------------------------------------

needs_espeak = pytest.mark.skipif(not espeak_available(), reason=espeak_missing_reason())


@pytest.fixture(scope="module")
def spoken_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("spoken_cache")


def test_spoken_digits_missing_espeak_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("ESPEAK_NG", str(tmp_path / "no-such-program"))
    assert not espeak_available()
    with pytest.raises(EspeakNotFoundError, match="apt-get install espeak-ng"):
        SpokenDigits("train", num_samples=10, cache_dir=tmp_path)


@needs_espeak
def test_spoken_digits(spoken_cache, monkeypatch):
    ds = SpokenDigits(
        "train", num_samples=30, sample_rate=8000, duration=0.9, cache_dir=spoken_cache
    )
    assert len(ds) == 30 and ds.sample_rate == 8000 and ds.clip_length == 7200
    assert np.bincount(ds.targets.numpy()).tolist() == [3] * 10
    for i in range(len(ds)):
        x, y = ds[i]
        _check_classification_item(x, y, (7200,), 10, lo=-1.0, hi=1.0)
        assert x.abs().max() > 0.05  # there is speech in every clip
        assert (
            ds.describe(i)["word"]
            == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"][y]
        )
    # cached: a second instance works even without espeak-ng and gives identical audio
    monkeypatch.setenv("ESPEAK_NG", "/nonexistent/espeak-ng")
    again = SpokenDigits(
        "train", num_samples=30, sample_rate=8000, duration=0.9, cache_dir=spoken_cache
    )
    assert torch.equal(again.waveforms, ds.waveforms)
    assert ds.settings == synthesis_settings("train", num_samples=30)


def test_spoken_digit_settings_split():
    # train and test use disjoint synthesis settings for each digit (no espeak-ng needed)
    train, test = synthesis_settings("train"), synthesis_settings("test")
    assert (len(train), len(test), len(synthesis_settings("all"))) == (1280, 320, 1600)
    assert not set(train) & set(test) and len(set(train)) == 1280
    assert set(train) | set(test) == set(synthesis_settings("all"))
    assert [d for d, *_ in train[:20]] == list(range(10)) * 2  # balanced prefixes
    assert synthesis_settings("train", seed=1) != train
    assert synthesis_settings("train") == train


@needs_espeak
def test_audio_visual_digits(spoken_cache):
    ds = AudioVisualDigits(
        "test",
        num_samples=25,
        num_clips=20,
        sample_rate=8000,
        duration=0.9,
        cache_dir=spoken_cache,
    )
    assert len(ds) == 25 and ds.num_classes == 10 and ds.sample_rate == 8000
    mnist_test = MNIST("test")
    for i in range(len(ds)):
        sample, y = ds[i]
        assert set(sample) == {"image", "audio"}
        _check_classification_item(sample["image"], y, (28, 28, 1), 10)
        _check_classification_item(sample["audio"], y, (7200,), 10, lo=-1.0, hi=1.0)
        assert torch.equal(sample["image"], mnist_test[i][0]) and y == mnist_test[i][1]
        assert int(ds.audio.targets[ds.clip_index[i]]) == y  # same class
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = AudioVisualDigits(
            "test",
            num_samples=25,
            num_clips=20,
            sample_rate=8000,
            duration=0.9,
            cache_dir=spoken_cache,
        )
    assert torch.equal(again.clip_index, ds.clip_index)
