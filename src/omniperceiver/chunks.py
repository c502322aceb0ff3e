"""Inputs too large to exist whole: an input array built a chunk at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import Tensor


class InputChunks:
    """An input array (batch_size, num_inputs, channels) produced ``chunk_size`` inputs at a time.

    ``build(start, stop)`` returns the inputs ``start:stop`` (batch_size, stop - start,
    channels), so that an array too large for memory (a 4096 x 4096 image with its Fourier
    features) never exists whole. Iterating yields ``(start, stop, chunk)``. A cross-attend
    given InputChunks attends chunk by chunk (:func:`attend_chunks`), building each chunk
    when it needs it (again for every cross-attend).
    """

    def __init__(self, build: Callable[[int, int], Tensor], *, batch_size: int,
                 num_inputs: int, chunk_size: int):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size}")
        self.build = build
        self.batch_size = batch_size
        self.num_inputs = num_inputs
        self.chunk_size = chunk_size

    @classmethod
    def from_tensor(cls, inputs: Tensor, chunk_size: int) -> InputChunks:
        """Chunks of an existing (batch, num_inputs, channels) tensor."""
        return cls(lambda start, stop: inputs[:, start:stop], batch_size=inputs.shape[0],
                   num_inputs=inputs.shape[1], chunk_size=chunk_size)

    def map(self, fn: Callable[[Tensor], Tensor]) -> InputChunks:
        """The chunks with ``fn`` applied to each (a per-input function, such as a LayerNorm)."""
        return InputChunks(lambda start, stop: fn(self.build(start, stop)),
                           batch_size=self.batch_size, num_inputs=self.num_inputs,
                           chunk_size=self.chunk_size)

    def __iter__(self) -> Iterator[tuple[int, int, Tensor]]:
        for start in range(0, self.num_inputs, self.chunk_size):
            stop = min(start + self.chunk_size, self.num_inputs)
            yield start, stop, self.build(start, stop)


__all__ = ["InputChunks"]
