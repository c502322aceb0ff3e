"""Input adapters: a raw modality tensor in, (batch, num_inputs, channels) + mask out."""

from .base import AdapterOutput, InputAdapter
from .grid import GridAdapter, fourier_grid_adapter

__all__ = ["AdapterOutput", "InputAdapter", "GridAdapter", "fourier_grid_adapter"]
