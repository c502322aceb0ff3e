"""Text as UTF-8 bytes (Perceiver IO's language model): a byte tokenizer and a token adapter.

Vocabulary of 262 ids, in language-perceiver's order: 6 special tokens (pad 0, bos 1, eos 2,
mask 3, cls 4, sep 5), then byte ``b`` as id ``b + 6``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..position import LearnedPositionEncoding, PrefixPositions
from ..validation import check_mask, check_token_ids, shape_str
from .base import AdapterOutput, InputAdapter


class ByteTokenizer:
    """UTF-8 bytes <-> token ids (no state; the vocabulary is fixed).

    ``encode(texts)`` -> ids (batch, L) long and mask (batch, L) bool (True = token), padded
    with ``PAD`` to the longest text; with ``add_special_tokens`` each text is
    ``[CLS] bytes [SEP]`` (as transformers' ``PerceiverTokenizer``). ``max_length`` truncates
    the bytes so that every row, special tokens included, has at most ``max_length`` ids (a
    multi-byte character cut in two decodes to U+FFFD). ``decode(ids)`` skips special ids and
    decodes the bytes with ``errors="replace"``.
    """

    PAD, BOS, EOS, MASK, CLS, SEP = range(6)
    NUM_SPECIAL = 6
    VOCAB_SIZE = 256 + NUM_SPECIAL

    def encode(self, texts: str | Sequence[str], max_length: int | None = None,
               add_special_tokens: bool = True) -> tuple[Tensor, Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a string or a non-empty list of strings")
        specials = 2 if add_special_tokens else 0
        if max_length is not None and max_length < specials + 1:
            raise ValueError(f"max_length must be at least {specials + 1}, got {max_length}")
        rows = []
        for text in texts:
            ids = [b + self.NUM_SPECIAL for b in text.encode("utf-8")]
            if max_length is not None:
                ids = ids[:max_length - specials]
            rows.append([self.CLS, *ids, self.SEP] if add_special_tokens else ids)
        length = max(1, max(len(r) for r in rows))
        ids = torch.full((len(rows), length), self.PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask = torch.arange(length) < torch.tensor([len(r) for r in rows])[:, None]
        return ids, mask

    def decode(self, ids: Tensor | Sequence[Sequence[int]]) -> list[str]:
        """ids (batch, L) (or one sequence (L,)) -> one string per row."""
        ids = torch.as_tensor(ids)
        if ids.is_floating_point():
            raise TypeError(f"token ids must be integers, got dtype {ids.dtype}")
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2:
            raise ValueError(f"token ids must be (batch, length) or (length,), got "
                             f"{shape_str(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.VOCAB_SIZE):
            raise ValueError(f"token ids must lie in [0, {self.VOCAB_SIZE - 1}]")
        return [bytes(i - self.NUM_SPECIAL for i in row if i >= self.NUM_SPECIAL)
                .decode("utf-8", errors="replace") for row in ids.tolist()]


class TextAdapter(InputAdapter):
    """Token ids (batch, L) integer -> token embedding + learned position embedding
    (batch, L, num_channels).

    ``vocab_size`` (262: :class:`ByteTokenizer`) x ``num_channels`` embeddings and
    ``max_length`` x ``num_channels`` learned positions (the first L are used), both
    initialised with std ``init_std``. The mask (batch, L) is True for tokens to keep; when it
    is None, padding (id ``pad_id``) is masked out. Float ids are a TypeError.
    """

    def __init__(self, *, num_channels: int, max_length: int,
                 vocab_size: int = ByteTokenizer.VOCAB_SIZE, pad_id: int = ByteTokenizer.PAD,
                 init_std: float = 0.02):
        super().__init__()
        self.num_channels = num_channels
        self.max_length = max_length
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, num_channels)
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.position = PrefixPositions(
            LearnedPositionEncoding(max_length, num_channels, init_std=init_std), max_length)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> AdapterOutput:
        check_token_ids(x, vocab_size=self.vocab_size, max_length=self.max_length)
        batch, length = x.shape
        mask = check_mask(mask, batch=batch, axes=(length,))
        if mask is None:
            mask = x != self.pad_id
        embedded = self.embedding(x)
        pos = self.position.grid((length,), device=x.device, dtype=embedded.dtype)
        return AdapterOutput(inputs=embedded + pos, mask=mask, grid_shape=(length,),
                             token_embedding=self.embedding.weight)


__all__ = ["ByteTokenizer", "TextAdapter"]
