"""Batch augmentations, run on the device after each training batch is transferred.

Images are channels-last ``(batch, H, W, C)`` (video ``(batch, T, H, W, C)``), point clouds
``(batch, N, 3 + features)``. Every function draws from torch's global generator, which the data
module reseeds before each batch (see ``ClassificationData.on_after_batch_transfer``), so a run
resumed from a checkpoint sees the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --- images and video -------------------------------------------------------------------------


def random_shift(x: Tensor, max_shift: int) -> Tensor:
    """Shift each example by up to ``max_shift`` pixels along H and W (zero fill).

    ``x`` (batch, ..., H, W, C); every frame of a video moves together.
    """
    if max_shift <= 0:
        return x
    batch, *lead, h, w, c = x.shape
    s = max_shift
    flat = x.reshape(batch, -1, h, w, c)
    padded = F.pad(flat, (0, 0, s, s, s, s))  # (batch, frames, H + 2s, W + 2s, C)
    dy = torch.randint(0, 2 * s + 1, (batch,), device=x.device)
    dx = torch.randint(0, 2 * s + 1, (batch,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (batch,1,H,1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (batch,1,1,W)
    b = torch.arange(batch, device=x.device)[:, None, None, None]
    t = torch.arange(flat.shape[1], device=x.device)[None, :, None, None]
    return padded[b, t, rows, cols].reshape(x.shape)


def random_time_shift(x: Tensor, max_shift: int) -> Tensor:
    """Circularly shift each waveform (batch, T) by up to ``max_shift`` samples either way."""
    if max_shift <= 0:
        return x
    t = x.shape[1]
    shifts = torch.randint(-max_shift, max_shift + 1, (x.shape[0],), device=x.device)
    idx = (torch.arange(t, device=x.device)[None] - shifts[:, None]) % t
    return torch.gather(x, 1, idx)


def random_hflip(x: Tensor, p: float = 0.5) -> Tensor:
    """Mirror each image (batch, H, W, C) left-right with probability ``p``."""
    flip = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-2), x)


def random_affine(x: Tensor, *, degrees: float = 0.0,
                  scale: tuple[float, float] | None = None) -> Tensor:
    """Random rotation by up to ``degrees`` and isotropic scaling in ``scale`` of images
    (batch, H, W, C), bilinear with zero fill (one ``affine_grid`` + ``grid_sample`` for the
    whole batch)."""
    batch, h, w, _ = x.shape
    angle = (torch.rand(batch, device=x.device) * 2 - 1) * math.radians(degrees)
    zoom = (torch.empty(batch, device=x.device).uniform_(*scale) if scale
            else torch.ones(batch, device=x.device))
    # theta maps output to input coordinates (normalised to [-1, 1] per axis): the inverse
    # rotation and zoom, conjugated by the aspect ratio so that non-square images rotate rigidly.
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    aspect = w / h
    theta = torch.zeros(batch, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, sin / aspect
    theta[:, 1, 0], theta[:, 1, 1] = -sin * aspect, cos
    images = x.movedim(-1, 1).float()
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.movedim(1, -1).to(x.dtype)


def random_elastic(x: Tensor, *, alpha: float, sigma: float) -> Tensor:
    """Elastic distortion of images (batch, H, W, C) (Simard et al., 2003): every pixel moves by
    a random displacement field, uniform in [-1, 1] per pixel and axis, smoothed by a Gaussian of
    ``sigma`` pixels and scaled by ``alpha`` pixels; bilinear resampling with zero fill, one
    ``grid_sample`` for the whole batch. Strokes bend and thicken locally, as handwriting does.
    """
    if alpha <= 0:
        return x
    batch, h, w, _ = x.shape
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    field = torch.rand(batch * 2, 1, h, w, device=x.device) * 2 - 1  # dx and dy of each image
    for pad, shape in (((radius, radius, 0, 0), (1, 1, 1, -1)), ((0, 0, radius, radius),
                                                                  (1, 1, -1, 1))):
        field = F.conv2d(F.pad(field, pad, mode="replicate"), kernel.view(shape))
    # Gaussian smoothing of uniform noise shrinks it: rescale to a unit peak so that ``alpha``
    # is the largest displacement in pixels, whatever ``sigma``.
    field = field / field.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-8)
    field = alpha * field.view(batch, 2, h, w).movedim(1, -1)  # (batch, H, W, 2) pixels (x, y)
    images = x.movedim(-1, 1).float()
    identity = torch.eye(2, 3, device=x.device).expand(batch, 2, 3)  # each pixel's own centre
    grid = F.affine_grid(identity, list(images.shape), align_corners=False)
    grid = grid + field * torch.tensor([2 / w, 2 / h], device=x.device)  # pixels -> [-1, 1]
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.movedim(1, -1).to(x.dtype)


def random_resized_crop(x: Tensor, *, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Tensor:
    """Inception-style crops resized back to the input size (kornia), (batch, H, W, C)."""
    import kornia.augmentation as K

    crop = K.RandomResizedCrop(tuple(x.shape[1:3]), scale=scale, ratio=ratio)
    return crop(x.movedim(-1, 1)).movedim(1, -1).to(x.dtype)


class RandAugment(nn.Module):
    """kornia's RandAugment (``num_ops`` operations of magnitude ``magnitude`` out of 30) on
    channels-last images in [0, 1]."""

    def __init__(self, num_ops: int = 2, magnitude: int = 9):
        super().__init__()
        from kornia.augmentation.auto import RandAugment as KorniaRandAugment

        self.op = KorniaRandAugment(n=num_ops, m=magnitude)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x.movedim(-1, 1)).clamp(0, 1).movedim(1, -1).to(x.dtype)


def _beta(alpha: float) -> float:
    return float(torch.distributions.Beta(alpha, alpha).sample())


def mixup_cutmix(x: Tensor, y: Tensor, num_classes: int, *, mixup_alpha: float = 0.0,
                 cutmix_alpha: float = 0.0, prob: float = 1.0) -> tuple[Tensor, Tensor]:
    """MixUp or CutMix (chosen at random when both are on) with probability ``prob``.

    ``x`` (batch, H, W, C) images, ``y`` (batch,) labels. Returns the mixed images and soft
    targets (batch, num_classes): each example is mixed with the batch reversed, MixUp blends
    whole images with a weight ~ Beta(alpha, alpha), CutMix pastes a box whose area fraction
    is ~ Beta(alpha, alpha) and weights the labels by the pasted area.
    """
    target = F.one_hot(y, num_classes).to(torch.float32)
    modes = [m for m, a in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if a > 0]
    if not modes or float(torch.rand(())) >= prob:
        return x, target
    mode = modes[int(torch.randint(len(modes), ()))]
    other_x, other_t = x.flip(0), target.flip(0)
    if mode == "mixup":
        lam = _beta(mixup_alpha)
        return lam * x + (1 - lam) * other_x, lam * target + (1 - lam) * other_t
    h, w = x.shape[1], x.shape[2]
    cut = math.sqrt(1 - _beta(cutmix_alpha))
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    top, bottom = max(cy - ch // 2, 0), min(cy + ch - ch // 2, h)
    left, right = max(cx - cw // 2, 0), min(cx + cw - cw // 2, w)
    mixed = x.clone()
    mixed[:, top:bottom, left:right] = other_x[:, top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (h * w)
    return mixed, lam * target + (1 - lam) * other_t


# --- point clouds -----------------------------------------------------------------------------


def augment_points(x: Tensor, *, jitter: float = 0.0, jitter_clip: float = 0.05,
                   scale: tuple[float, float] | None = None, rotate_z: bool = False) -> Tensor:
    """Point clouds (batch, N, 3 + features): a random rotation about the z (up) axis, a random
    per-cloud isotropic scale in ``scale`` and clipped Gaussian jitter of each point.
    Rotations also turn normals (features 3..5 when present); scale and jitter touch only xyz."""
    coords, features = x[..., :3], x[..., 3:]
    batch = x.shape[0]
    if rotate_z:
        angle = torch.rand(batch, device=x.device) * 2 * math.pi
        cos, sin = angle.cos(), angle.sin()
        zero, one = torch.zeros_like(angle), torch.ones_like(angle)
        rot = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], -1).view(-1, 3, 3)
        rot = rot.to(x.dtype)
        coords = coords @ rot.transpose(1, 2)
        if features.shape[-1] >= 3:
            features = torch.cat([features[..., :3] @ rot.transpose(1, 2), features[..., 3:]], -1)
    if scale is not None:
        lo, hi = scale
        s = torch.empty(batch, 1, 1, device=x.device, dtype=x.dtype).uniform_(lo, hi)
        coords = coords * s
    if jitter > 0:
        coords = coords + (torch.randn_like(coords) * jitter).clamp(-jitter_clip, jitter_clip)
    return torch.cat([coords, features], dim=-1)


# --- audio ------------------------------------------------------------------------------------


@dataclass
class SpecAugment:
    """SpecAugment-style masking of log-mel spectrograms (Park et al., 2019), training only:
    ``freq_masks`` bands of up to ``freq_width`` mel bins and ``time_masks`` spans of up to
    ``time_width`` frames are set to the example's mean."""

    freq_masks: int = 2
    freq_width: int = 8
    time_masks: int = 2
    time_width: int = 10

    def __call__(self, frames: Tensor) -> Tensor:
        """``frames`` (batch, num_frames, n_mels * channels)."""
        batch, num_frames, bins = frames.shape
        fill = frames.mean(dim=(1, 2), keepdim=True)
        keep = torch.ones(batch, num_frames, bins, dtype=torch.bool, device=frames.device)
        for count, width, size, axis in ((self.freq_masks, self.freq_width, bins, 2),
                                         (self.time_masks, self.time_width, num_frames, 1)):
            idx = torch.arange(size, device=frames.device)
            for _ in range(count):
                w = torch.randint(0, width + 1, (batch,), device=frames.device)
                start = (torch.rand(batch, device=frames.device) * (size - w + 1)).long()
                band = (idx >= start[:, None]) & (idx < (start + w)[:, None])  # (batch, size)
                keep &= ~(band[:, None, :] if axis == 2 else band[:, :, None])
        return torch.where(keep, frames, fill)


def attach_spec_augment(model: nn.Module, spec_augment: SpecAugment) -> int:
    """Mask the output of every log-mel front end in ``model`` while it is training.

    Returns the number of front ends found (0: the model has no spectrogram input).
    """
    from ..adapters.audio import LogMelSpectrogram

    def hook(module, args, output):
        if not module.training:
            return output
        frames, mask = output
        return spec_augment(frames), mask

    found = 0
    for module in model.modules():
        if isinstance(module, LogMelSpectrogram):
            module.register_forward_hook(hook)
            found += 1
    return found


__all__ = ["random_shift", "random_hflip", "random_affine", "random_resized_crop", "RandAugment",
           "mixup_cutmix", "augment_points", "SpecAugment", "attach_spec_augment"]
