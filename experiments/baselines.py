"""The models the Perceiver is compared with: small, conventional, one per input structure.

All take the package's channels-last inputs and return logits (batch, num_classes):

* :class:`ResNet` -- images (batch, H, W, C): a ResNet-style CNN (3 stages of residual blocks);
* :class:`ViT` -- images: a Vision Transformer on non-overlapping patches;
* :class:`PointNet` -- point clouds (batch, N, 3): a shared per-point MLP and a max-pool;
* :class:`SpectrogramCNN` -- waveforms (batch, T): the package's log-mel front end, then a
  ResNet on the (frames x mel bins) image;
* :class:`VideoCNN` -- video (batch, T, H, W, C): a 3D CNN;
* :class:`LateFusion` -- ``{"image", "audio"}``: a ResNet and a spectrogram CNN whose pooled
  features are concatenated before one linear classifier.

and one for text, :class:`CausalTransformer` -- token ids (batch, N) -> next-token logits
(batch, N, vocab_size): the decoder-only Transformer beside Perceiver AR
(``CausalTransformer.like(perceiver_ar)`` has its sizes and parameter count).

``width`` scales each model, so that :func:`experiments.common.closest_in_size` can match a
baseline's parameter count to the Perceiver it is compared with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omniperceiver.adapters.audio import LogMelSpectrogram
from omniperceiver.adapters.patches import space_to_depth
from omniperceiver.kernels import attend

# --- images: ResNet-style CNN -----------------------------------------------------------------


class ResidualBlock(nn.Module):
    """conv 3x3 -> BN -> ReLU -> conv 3x3 -> BN, plus the input (a 1x1 conv when the shape
    changes), then ReLU. (batch, C_in, H, W) -> (batch, C_out, H / stride, W / stride)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1,
                               bias=False)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.skip = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.skip = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(h)) + self.skip(x))


class ResNet(nn.Module):
    """Images (batch, H, W, C) -> logits: a 3x3 stem (stride ``stem_stride``, followed by a
    2x2 max-pool if ``stem_pool``), then one residual block per stage with ``width``,
    ``2 width`` and ``4 width`` channels (the last two halve the resolution), global average
    pooling and a linear classifier."""

    def __init__(self, *, input_channels: int = 1, num_classes: int = 10, width: int = 32,
                 stem_stride: int = 1, stem_pool: bool = False):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(input_channels, width, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2) if stem_pool else nn.Identity())
        self.stages = nn.Sequential(ResidualBlock(width, width),
                                    ResidualBlock(width, 2 * width, stride=2),
                                    ResidualBlock(2 * width, 4 * width, stride=2))
        self.num_features = 4 * width
        self.head = nn.Linear(self.num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """(batch, H, W, C) -> pooled features (batch, 4 width)."""
        h = self.stages(self.stem(x.movedim(-1, 1)))  # (batch, 4 width, H / 4, W / 4)
        return h.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# --- images: Vision Transformer ---------------------------------------------------------------


class TransformerBlock(nn.Module):
    """Pre-norm Transformer layer: norm -> self-attention -> residual, norm -> MLP ->
    residual. (batch, tokens, dim) -> same. The attention is the package's
    (:func:`omniperceiver.kernels.attend`), so the ViT gets the same CPU kernel choices as
    the Perceiver it is compared with (under bf16 autocast PyTorch's fused backward takes
    over half of a ViT step)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, tokens, dim / heads)
        h = attend(q, k, v)
        x = x + self.proj(h.transpose(1, 2).reshape(batch, tokens, dim))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Images (batch, H, W, C) -> logits: ``patch_size`` x ``patch_size`` patches, linearly
    embedded, plus a learned embedding of each patch's position; ``depth`` Transformer
    layers; mean over patches, LayerNorm, linear classifier."""

    def __init__(self, *, image_shape: tuple[int, int], patch_size: int, input_channels: int = 1,
                 num_classes: int = 10, width: int = 96, depth: int = 4, heads: int = 4):
        super().__init__()
        h, w = image_shape
        if h % patch_size or w % patch_size:
            raise ValueError(f"image_shape {image_shape} is not divisible by patch_size "
                             f"{patch_size}")
        self.patch_size = patch_size
        self.embed = nn.Linear(patch_size * patch_size * input_channels, width)
        self.position = nn.Parameter(torch.zeros((h // patch_size) * (w // patch_size), width))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(width, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch_size
        patches = space_to_depth(x, (p, p)).flatten(1, 2)  # (batch, patches, p * p * C)
        tokens = self.embed(patches) + self.position
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


# --- point clouds -----------------------------------------------------------------------------


class PointNet(nn.Module):
    """Point clouds (batch, N, 3 + features) -> logits: a per-point MLP (linear layers with
    batch norm, shared by all points) of widths 64, 64, 256, a max over points, then an MLP
    classifier ``256 -> width -> width -> num_classes``. Invariant to the order of the points,
    like the Perceiver. ``width`` sizes the part after the pooling, so a larger model costs
    little more per epoch."""

    def __init__(self, *, input_channels: int = 3, num_classes: int = 12, width: int = 256):
        super().__init__()
        widths = [input_channels, 64, 64, 256]
        self.point_layers = nn.ModuleList(nn.Linear(a, b, bias=False)
                                          for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.point_norms = nn.ModuleList(nn.BatchNorm1d(b) for b in widths[1:])
        self.head = nn.Sequential(nn.Linear(256, width), nn.BatchNorm1d(width), nn.ReLU(),
                                  nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(),
                                  nn.Linear(width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        batch, num_points, _ = x.shape
        h = x.reshape(batch * num_points, -1)  # every point a row
        for layer, norm in zip(self.point_layers, self.point_norms, strict=True):
            h = F.relu(norm(layer(h)))
        return self.head(h.view(batch, num_points, -1).amax(dim=1))  # (batch, 256) pooled


# --- audio ------------------------------------------------------------------------------------


class SpectrogramCNN(nn.Module):
    """Waveforms (batch, T) -> logits: log-mel frames (the package's
    :class:`~omniperceiver.adapters.audio.LogMelSpectrogram`, as the Perceiver's spectrogram
    front end computes them), batch-normalised, as a (frames x mel bins) image into a
    :class:`ResNet` with a stride-2 stem and a max-pool."""

    def __init__(self, *, sample_rate: int = 16000, n_mels: int = 64, hop_length: int = 160,
                 num_classes: int = 10, width: int = 32):
        super().__init__()
        self.frontend = LogMelSpectrogram(sample_rate=sample_rate, n_mels=n_mels,
                                          hop_length=hop_length)
        self.input_norm = nn.BatchNorm2d(1)
        self.cnn = ResNet(input_channels=1, num_classes=num_classes, width=width, stem_stride=2,
                          stem_pool=True)
        self.num_features = self.cnn.num_features

    def features(self, waveform: Tensor) -> Tensor:
        frames, _ = self.frontend(waveform[..., None].float())  # (batch, frames, n_mels)
        image = self.input_norm(frames[:, None]).movedim(1, -1)  # (batch, frames, n_mels, 1)
        return self.cnn.features(image)

    def forward(self, waveform: Tensor) -> Tensor:
        return self.cnn.head(self.features(waveform))


# --- video ------------------------------------------------------------------------------------


class VideoCNN(nn.Module):
    """Video (batch, T, H, W, C) -> logits: three 3x3x3 convolutions with batch norm (``width``,
    ``2 width``, ``4 width`` channels; the first halves H and W, the others T, H and W),
    global average pooling, a linear classifier."""

    def __init__(self, *, input_channels: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()
        widths = [input_channels, width, 2 * width, 4 * width]
        strides = [(1, 2, 2), (2, 2, 2), (2, 2, 2)]
        layers: list[nn.Module] = []
        for a, b, s in zip(widths[:-1], widths[1:], strides, strict=True):
            layers += [nn.Conv3d(a, b, 3, stride=s, padding=1, bias=False), nn.BatchNorm3d(b),
                       nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.convs(x.movedim(-1, 1))  # (batch, 4 width, T', H', W')
        return self.head(h.mean(dim=(2, 3, 4)))


# --- audio + image ----------------------------------------------------------------------------


class LateFusion(nn.Module):
    """``{"image": (batch, H, W, C), "audio": (batch, T)}`` -> logits: a :class:`ResNet` (stride-2
    stem) on the image and a :class:`SpectrogramCNN` on the audio, their pooled features
    concatenated into one linear classifier."""

    def __init__(self, *, input_channels: int = 1, sample_rate: int = 16000, n_mels: int = 64,
                 hop_length: int = 160, num_classes: int = 10, width: int = 32):
        super().__init__()
        self.image = ResNet(input_channels=input_channels, num_classes=num_classes, width=width,
                            stem_stride=2)
        self.audio = SpectrogramCNN(sample_rate=sample_rate, n_mels=n_mels,
                                    hop_length=hop_length, num_classes=num_classes, width=width)
        self.head = nn.Linear(self.image.num_features + self.audio.num_features, num_classes)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        return self.head(torch.cat([self.image.features(x["image"]),
                                    self.audio.features(x["audio"])], dim=-1))


__all__ = ["ResNet", "ViT", "PointNet", "SpectrogramCNN", "VideoCNN", "LateFusion"]


# --- text: a decoder-only Transformer ---------------------------------------------------------


class CausalTransformer(nn.Module):
    """Token ids (batch, N) -> next-token logits (batch, N, vocab_size): the Transformer that
    Perceiver AR is compared with. Every layer is a causal self-attend over all N positions
    (``scaled_dot_product_attention(is_causal=True)``) with the conventions of
    :class:`omniperceiver.PerceiverAR`: the same token embedding and initialisation, rotary
    positions on the same fraction of each head's channels, pre-norm attention and
    feed-forward sublayers, a final norm and a linear head."""

    def __init__(self, *, vocab_size: int = 262, max_context: int = 1024, dim: int = 256,
                 heads: int = 4, num_layers: int = 5, widening_factor: int = 4,
                 activation: str = "gelu", rotary_fraction: float = 0.5,
                 init_std: float = 0.02):
        super().__init__()
        from omniperceiver.attention import Attention, FeedForward, make_norm
        from omniperceiver.position import RotaryPositions

        self.max_context = max_context
        self.heads = heads
        self.embedding = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.rotary = RotaryPositions(dim // heads, fraction=rotary_fraction,
                                      max_wavelength=max_context)
        self.layers = nn.ModuleList(nn.ModuleDict({
            "norm_attend": make_norm("layer", dim),
            "attention": Attention(q_dim=dim, kv_dim=dim, qk_channels=dim, v_channels=dim,
                                   heads=heads),
            "norm_ff": make_norm("layer", dim),
            "ff": FeedForward(dim, widening_factor=widening_factor, activation=activation),
        }) for _ in range(num_layers))
        self.norm = make_norm("layer", dim)
        self.to_logits = nn.Linear(dim, vocab_size)

    @classmethod
    def like(cls, perceiver_ar: nn.Module) -> CausalTransformer:
        """The Transformer with a Perceiver AR's sizes: its context, channels, heads and
        feed-forward width, and one layer per attention of it (its cross-attend and its
        self-attends), so the parameter counts match (the Perceiver AR has one more norm)."""
        layer, dim = perceiver_ar.cross_attend, perceiver_ar.embedding.embedding_dim
        return cls(vocab_size=perceiver_ar.vocab_size, max_context=perceiver_ar.max_context,
                   dim=dim, heads=layer.attention.heads,
                   num_layers=1 + len(perceiver_ar.self_attends),
                   widening_factor=layer.ff.fc2.in_features // dim,
                   activation=layer.ff.activation,
                   rotary_fraction=perceiver_ar.rotary.rotated / (dim // layer.attention.heads))

    def forward(self, ids: Tensor) -> Tensor:
        batch, n = ids.shape
        x = self.embedding(ids)  # (batch, N, dim)
        angles = self.rotary.angles(torch.arange(n, device=ids.device).expand(batch, n))
        for layer in self.layers:
            attention = layer["attention"]
            h = layer["norm_attend"](x)
            q = attention.to_q(h)
            k, v = attention.to_kv(h).split(attention.kv_split, dim=-1)
            q, k, v = (t.view(batch, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
            q, k = self.rotary.rotate(q, angles), self.rotary.rotate(k, angles)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (b, heads, N, c)
            x = x + attention.to_out(out.transpose(1, 2).flatten(2))
            x = x + layer["ff"](layer["norm_ff"](x))
        return self.to_logits(self.norm(x))
