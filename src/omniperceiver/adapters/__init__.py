"""Input adapters: a raw modality tensor in, (batch, num_inputs, channels) + mask out.

One adapter per modality (image, video, waveform, spectrogram, point cloud, text, pairs of
frames for optical flow), a multimodal adapter that joins them (and one that masks some of
them out), and the grid and stem adapters they are built from.
"""

from .audio import LogMelSpectrogram, SpectrogramAdapter, WaveformAdapter, mel_filter_bank
from .base import AdapterOutput, InputAdapter
from .flow import FlowAdapter, flow_patches
from .grid import GridAdapter
from .image import ConvStem, ImageAdapter
from .multimodal import MaskTokens, MultimodalAdapter, split_modalities
from .patches import Patches, StemAdapter, space_to_depth
from .points import PointCloudAdapter, pad_point_clouds, pad_sequences
from .text import ByteTokenizer, TextAdapter
from .video import VideoAdapter

__all__ = [
    "AdapterOutput", "InputAdapter", "GridAdapter",
    "StemAdapter", "Patches", "space_to_depth",
    "ImageAdapter", "ConvStem", "VideoAdapter", "WaveformAdapter", "SpectrogramAdapter",
    "LogMelSpectrogram", "mel_filter_bank", "PointCloudAdapter", "pad_point_clouds",
    "pad_sequences", "ByteTokenizer", "TextAdapter", "MultimodalAdapter", "MaskTokens",
    "split_modalities", "FlowAdapter", "flow_patches",
]
