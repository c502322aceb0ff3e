"""Perceiver AR (Hawthorne et al. 2022): a causal language model whose latents are the last
M of its N input positions.

    token ids (batch, N)
      -> token embedding                           (batch, N, dim)
      -> causal cross-attend: the last M positions attend to all N, each to positions up to
         its own (aligned at the lower right)      (batch, M, dim)
      -> causal latent self-attends                (batch, M, dim)
      -> final norm, next-token logits             (batch, M, vocab_size)

In the words of the rest of the library: the token embedding is the input adapter, the
cross-attend and the self-attends the encoder, and the norm and logits the output adapter;
there is no decoder, since latent i is itself the prediction of the token after position
``N - M + i``. Every attention is an :class:`~omniperceiver.attention.Attention`'s
projections around :func:`~omniperceiver.kernels.attend`, with rotary position embeddings
(:class:`~omniperceiver.position.RotaryPositions`) on queries and keys by absolute position
and a per-query causal mask built from those positions.

:meth:`PerceiverAR.generate` samples with a cache (see docs/perceiver-ar.md): the
cross-attend's keys and values of the window's inputs, the cross-attend's outputs of its
latent positions, and each self-attend's keys and values of its input latents. Whatever a new
token leaves valid is reused; whatever it changes is computed again:

* the window of inputs moves (its oldest inputs leave): every latent saw them, so the latents
  are computed again from their cross-attend on, from the cached keys and values;
* the latent positions move (the oldest latent becomes a prefix input): the cross-attend
  outputs stay valid, and the self-attends run again over the latents;
* neither: the new token's position becomes one more latent, and only it is computed, against
  every cached key and value.

With ``stride=1`` every token is drawn as :meth:`forward` draws it from the last N tokens
with M latents, so the window and the latents move at every token once the window is full:
each token costs a cross-attend of M latents and the self-attends over them. With
``stride=S`` the window and the latents move S positions at once, and between moves each new
token is one more latent: a token is drawn from the last N - S + 1 to N tokens with m to
m + S - 1 latents (again exactly as :meth:`forward` draws it from that window with that many
latents; m is by default M - S + 1, so that no token sees more latents than in training), and
only one token in S pays for the move.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .adapters.text import ByteTokenizer
from .attention import Attention, FeedForward, make_norm
from .kernels import attend
from .position import RotaryPositions
from .validation import check_mask, check_options, check_token_ids

Angles = tuple[Tensor, Tensor]


def _split_heads(x: Tensor, heads: int) -> Tensor:
    b, n, c = x.shape  # -> (batch, heads, n, c / heads)
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def causal_mask(query_positions: Tensor, key_positions: Tensor, key_mask: Tensor) -> Tensor:
    """(batch, queries) and (batch, keys) positions, (batch, keys) bool -> (batch, queries,
    keys) bool: a query attends to the real keys at its own position or before."""
    return (key_positions[:, None, :] <= query_positions[:, :, None]) & key_mask[:, None, :]


class RotaryAttentionLayer(nn.Module):
    """Pre-norm attention with rotary positions, then a pre-norm feed-forward, each with a
    residual: Perceiver AR's cross-attend (``cross=True``: the keys and values come from the
    inputs, with their own norm) or one of its latent self-attends.

    The keys and values are computed apart from the queries (:meth:`keys_values`), so that
    they can be cached: ``forward(x, angles, keys, values, mask)`` takes queries ``x`` (batch,
    n, dim) at rotation ``angles``, keys and values (batch, heads, m, head_dim) and a mask
    (batch, n, m) -> (batch, n, dim).
    """

    def __init__(self, dim: int, *, heads: int, head_dim: int, widening_factor: int,
                 activation: str, dropout: float, cross: bool):
        super().__init__()
        self.norm_q = make_norm("layer", dim)
        self.norm_kv = make_norm("layer", dim) if cross else None
        self.attention = Attention(q_dim=dim, kv_dim=dim, qk_channels=heads * head_dim,
                                   v_channels=heads * head_dim, heads=heads, dropout=dropout)
        self.norm_ff = make_norm("layer", dim)
        self.ff = FeedForward(dim, widening_factor=widening_factor, activation=activation,
                              dropout=dropout)

    def keys_values(self, x: Tensor, angles: Angles, rotary: RotaryPositions, *,
                    latents: bool = False) -> tuple[Tensor, Tensor]:
        """Inputs (or latents) (batch, m, dim) -> rotated keys and values (batch, heads, m,
        head_dim). ``latents=True``: a cross-attend's keys of latent positions normed with the
        queries' norm (``PerceiverAR(separate_latent_norm=True)``)."""
        x = self.norm_q(x) if self.norm_kv is None or latents else self.norm_kv(x)
        k, v = self.attention.to_kv(x).split(self.attention.kv_split, dim=-1)
        heads = self.attention.heads
        return rotary.rotate(_split_heads(k, heads), angles), _split_heads(v, heads)

    def forward(self, x: Tensor, angles: Angles, rotary: RotaryPositions, keys: Tensor,
                values: Tensor, mask: Tensor) -> Tensor:
        attention = self.attention
        q = rotary.rotate(_split_heads(attention.to_q(self.norm_q(x)), attention.heads), angles)
        dropout = attention.dropout if self.training else 0.0
        out = attend(q, keys, values, mask, dropout, scale=q.shape[-1] ** -0.5)
        x = x + attention.to_out(out.transpose(1, 2).flatten(2))  # (batch, n, dim)
        return x + self.ff(self.norm_ff(x))


class KeyValueWindow:
    """The cross-attend's keys and values (batch, heads, W, head_dim) of a window of W
    positions, stored with room to append: appending k positions writes k positions, and
    the kept ones move to the front of new storage only when the room runs out (once in at
    least 64 positions), instead of a copy of the whole window for every token. Made from
    the first keys and values without a copy; they are never written to."""

    def __init__(self, keys: Tensor, values: Tensor):
        self.keys, self.values = keys, values  # storage: positions start .. stop are the window
        self.start, self.stop = 0, keys.shape[2]

    def append(self, keys: Tensor, values: Tensor, *, keep: int) -> None:
        """Appends ``keys`` and ``values`` (batch, heads, k, head_dim), then keeps the last
        ``keep`` positions."""
        k = keys.shape[2]
        first = max(self.start, self.stop + k - keep)  # the first old position kept
        if self.stop + k > self.keys.shape[2]:  # no room: new storage, the kept ones first
            kept = self.stop - first
            size = kept + k + max(64, (kept + k) // 4)
            batch, heads, _, head_dim = keys.shape
            old = self.keys, self.values
            self.keys, self.values = (keys.new_empty(batch, heads, size, head_dim)
                                      for _ in range(2))
            self.keys[:, :, :kept] = old[0][:, :, first:self.stop]
            self.values[:, :, :kept] = old[1][:, :, first:self.stop]
            first, self.stop = 0, kept
        self.keys[:, :, self.stop:self.stop + k] = keys
        self.values[:, :, self.stop:self.stop + k] = values
        self.start, self.stop = first, self.stop + k

    def keys_values(self) -> tuple[Tensor, Tensor]:
        """The window's keys and values (batch, heads, W, head_dim)."""
        return (self.keys[:, :, self.start:self.stop], self.values[:, :, self.start:self.stop])


@dataclass
class GenerationCache:
    """What :meth:`PerceiverAR.generate` keeps between tokens, for a window of the last
    ``W <= N`` positions of which the last ``L <= M`` are latents. Extending a cache
    updates its :class:`KeyValueWindow` in place: only the newest cache is valid."""

    ids: Tensor  # (batch, W) the window's tokens
    positions: Tensor  # (batch, W) their absolute positions
    mask: Tensor  # (batch, W) bool, False = padding
    inputs: KeyValueWindow  # the cross-attend's keys and values of the window, rotated
    latents: Tensor  # (batch, L, dim) the cross-attend's outputs of the last L positions
    self_attends: list[tuple[Tensor, Tensor]]  # per self-attend, keys and values of its input


class PerceiverAR(nn.Module):
    """Perceiver AR: token ids (batch, N) -> next-token logits (batch, M, vocab_size) of the
    last M positions.

    ``vocab_size`` (262: :class:`~omniperceiver.adapters.ByteTokenizer`'s bytes and specials);
    ``max_context`` the most inputs N one forward sees; ``num_latents`` the default M;
    ``dim`` channels everywhere, ``heads`` attention heads of ``head_dim`` channels each
    (default ``dim / heads``); ``num_self_attends`` latent self-attends after the
    cross-attend; feed-forwards ``widening_factor`` wide with ``activation``; ``dropout`` on
    attention weights and feed-forward outputs.
    ``rotary_fraction``: the fraction of each head's query and key channels that rotary
    position embeddings turn (the rest carry no position), with wavelengths up to
    ``max_wavelength`` (default: ``max_context``, as the reference implementation).
    ``prefix_dropout``: in training, each example's cross-attend sees a random
    ``1 - prefix_dropout`` of its prefix positions (the inputs before the latents; the
    latents' own positions are always kept), the paper's regulariser.

    Three options describe lucidrains' perceiver-ar-pytorch (for converted models, see
    :mod:`omniperceiver.convert.perceiver_ar`): ``learned_positions`` adds a learned
    embedding of each input's index in the window (0 .. N-1) to its token embedding, and
    positions are then window indices everywhere (so left padding shifts a row's positions);
    ``separate_latent_norm`` normalises the cross-attend's keys and values of the latent
    positions with the latents' (queries') norm, and only the prefix with the inputs' norm;
    ``final_norm=False`` leaves out the norm before the logits. A model with either of the
    first two generates without the cache (each token recomputes :meth:`forward` over the
    window), since a sliding window changes every cached key.
    """

    def __init__(
        self,
        *,
        vocab_size: int = ByteTokenizer.VOCAB_SIZE,
        max_context: int = 1024,
        num_latents: int = 256,
        dim: int = 512,
        heads: int = 8,
        num_self_attends: int = 6,
        widening_factor: int = 4,
        activation: str = "gelu",
        dropout: float = 0.0,
        prefix_dropout: float = 0.0,
        rotary_fraction: float = 0.5,
        max_wavelength: float | None = None,
        init_std: float = 0.02,
        head_dim: int | None = None,
        learned_positions: bool = False,
        separate_latent_norm: bool = False,
        final_norm: bool = True,
    ):
        super().__init__()
        check_options(dict(vocab_size=vocab_size, max_context=max_context,
                           num_latents=num_latents, dim=dim, heads=heads,
                           num_self_attends=num_self_attends, widening_factor=widening_factor,
                           dropout=dropout, prefix_dropout=prefix_dropout,
                           max_wavelength=max_wavelength, init_std=init_std,
                           head_dim=head_dim),
                      where="PerceiverAR")
        if num_latents > max_context:
            raise ValueError(f"num_latents must lie in [1, max_context={max_context}], "
                             f"got {num_latents}")
        if head_dim is None and dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads} (or give head_dim)")
        head_dim = head_dim or dim // heads
        self.vocab_size = vocab_size
        self.max_context = max_context
        self.num_latents = num_latents
        self.prefix_dropout = prefix_dropout
        self.embedding = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.position_embedding = None
        if learned_positions:
            self.position_embedding = nn.Embedding(max_context, dim)
            nn.init.normal_(self.position_embedding.weight, std=init_std)
        self.separate_latent_norm = separate_latent_norm
        self.rotary = RotaryPositions(head_dim, fraction=rotary_fraction,
                                      max_wavelength=max_wavelength or max_context)
        layer = dict(heads=heads, head_dim=head_dim, widening_factor=widening_factor,
                     activation=activation, dropout=dropout)
        self.cross_attend = RotaryAttentionLayer(dim, cross=True, **layer)
        self.self_attends = nn.ModuleList(RotaryAttentionLayer(dim, cross=False, **layer)
                                          for _ in range(num_self_attends))
        self.norm = make_norm("layer", dim) if final_norm else nn.Identity()
        self.to_logits = nn.Linear(dim, vocab_size)

    def forward(self, ids: Tensor, mask: Tensor | None = None, *,
                num_latents: int | None = None) -> Tensor:
        """``ids`` (batch, N <= max_context) integer; ``mask`` (batch, N) bool, False =
        padding (left padding: the real tokens of a row end at its last position); padded
        positions are never attended, and a row's real positions get the outputs they get
        without the padding (not so with ``learned_positions``, whose positions are window
        indices). ``num_latents``: M (default ``min(self.num_latents, N)``).
        Returns the logits (batch, M, vocab_size) of the tokens after positions N-M .. N-1."""
        ids = check_token_ids(ids, vocab_size=self.vocab_size, max_length=self.max_context)
        batch, n = ids.shape
        mask = check_mask(mask, batch=batch, axes=(n,))
        num_latents = self._check_num_latents(num_latents, n)
        mask = ids.new_ones(batch, n, dtype=torch.bool) if mask is None else mask
        positions = self._positions(mask)
        if self.training and self.prefix_dropout and n > num_latents:
            ids, positions, mask = self._drop_prefix(ids, positions, mask, num_latents)
        latents, _ = self._extend(None, ids, positions, mask, num_latents, ids.shape[1])
        return self.to_logits(self.norm(latents))

    def _positions(self, mask: Tensor) -> Tensor:
        """(batch, n) bool -> positions (batch, n): counted from each row's first real token,
        or with ``learned_positions`` the index in the window."""
        if self.position_embedding is None:
            return padded_positions(mask)
        return torch.arange(mask.shape[1], device=mask.device).expand(mask.shape)

    def _embed(self, ids: Tensor, positions: Tensor) -> Tensor:
        """Token ids (batch, n) at ``positions`` -> (batch, n, dim)."""
        x = self.embedding(ids)
        return x if self.position_embedding is None else x + self.position_embedding(positions)

    def _check_num_latents(self, num_latents: int | None, n: int) -> int:
        if num_latents is None:
            return min(self.num_latents, n)
        if isinstance(num_latents, bool) or not isinstance(num_latents, int):
            raise TypeError(f"num_latents must be an int, got {type(num_latents).__name__}")
        if not 1 <= num_latents <= n:
            raise ValueError(f"num_latents (M) must lie in [1, N] for N={n} inputs, "
                             f"got M={num_latents}")
        return num_latents

    def _drop_prefix(self, ids: Tensor, positions: Tensor, mask: Tensor, num_latents: int
                     ) -> tuple[Tensor, Tensor, Tensor]:
        """Keeps a random ``1 - prefix_dropout`` of each row's prefix positions, in order,
        and all its latent positions. The causal mask comes from the positions, so the kept
        inputs are attended exactly as before."""
        batch, n = ids.shape
        prefix = n - num_latents
        kept = prefix - round(prefix * self.prefix_dropout)
        chosen = torch.rand(batch, prefix, device=ids.device).argsort(dim=-1)[:, :kept]
        latent_index = torch.arange(prefix, n, device=ids.device).expand(batch, -1)
        index = torch.cat([chosen.sort(dim=-1).values, latent_index], dim=1)
        return ids.gather(1, index), positions.gather(1, index), mask.gather(1, index)

    def _extend(self, cache: GenerationCache | None, ids: Tensor, positions: Tensor,
                mask: Tensor, num_latents: int, window: int
                ) -> tuple[Tensor, GenerationCache]:
        """Appends ``ids`` (batch, k) at ``positions`` with ``mask`` to ``cache`` (None: to
        nothing), keeping the last ``window`` positions of which the last ``num_latents`` are
        latents. Returns the final latents computed afresh (batch, <= num_latents, dim): all
        of them, or only the new ones where the cache allowed; and the new cache."""
        old_window = 0 if cache is None else cache.ids.shape[1]
        old_latents = 0 if cache is None else cache.latents.shape[1]
        total = old_window + ids.shape[1]
        size = min(total, window)
        new = min(ids.shape[1], size)  # new tokens that stay in the window
        ids, positions, mask = ids[:, -new:], positions[:, -new:], mask[:, -new:]
        keys, values = self.cross_attend.keys_values(
            self._embed(ids, positions), self.rotary.angles(positions), self.rotary)
        if cache is None:
            inputs = KeyValueWindow(keys, values)
        else:  # the old window, then the new tokens; the oldest leave
            ids = torch.cat([cache.ids, ids], dim=1)[:, -size:]
            positions = torch.cat([cache.positions, positions], dim=1)[:, -size:]
            mask = torch.cat([cache.mask, mask], dim=1)[:, -size:]
            inputs = cache.inputs
            inputs.append(keys, values, keep=size)
            keys, values = inputs.keys_values()
        count = min(size, num_latents)  # latents: the last `count` positions of the window
        stay = max(count - new, 0)  # old latents that stay latents
        inputs_left = min(old_window, total - size) > 0  # every old latent had seen them
        cross_from = 0 if inputs_left else stay  # latents whose cross-attend is still valid
        self_from = stay if cross_from == stay == old_latents else 0  # no latent left either

        first = size - count  # the window index of the first latent
        query = slice(first + cross_from, size)
        queries = self._embed(ids[:, query], positions[:, query])
        angles = self.rotary.angles(positions[:, query])
        if self.separate_latent_norm:  # (no cache then: cross_from is 0, the queries are the
            # latents) the latents' keys and values with their own norm, the prefix's as before
            own_keys, own_values = self.cross_attend.keys_values(queries, angles, self.rotary,
                                                                 latents=True)
            keys = torch.cat([keys[:, :, :first], own_keys], dim=2)
            values = torch.cat([values[:, :, :first], own_values], dim=2)
        crossed = self.cross_attend(queries, angles, self.rotary, keys, values,
                                    causal_mask(positions[:, query], positions, mask))
        if cross_from:
            crossed = torch.cat([cache.latents[:, old_latents - cross_from:], crossed], dim=1)

        latent_positions, latent_mask = positions[:, first:], mask[:, first:]
        x = crossed[:, self_from:]
        angles = self.rotary.angles(latent_positions[:, self_from:])
        attend_mask = causal_mask(latent_positions[:, self_from:], latent_positions, latent_mask)
        self_attends = []
        for i, layer in enumerate(self.self_attends):
            k, v = layer.keys_values(x, angles, self.rotary)
            if self_from:
                k = torch.cat([cache.self_attends[i][0], k], dim=2)
                v = torch.cat([cache.self_attends[i][1], v], dim=2)
            self_attends.append((k, v))
            x = layer(x, angles, self.rotary, k, v, attend_mask)
        return x, GenerationCache(ids, positions, mask, inputs, crossed, self_attends)

    @torch.no_grad()
    def generate(self, prompt_ids: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 *, mask: Tensor | None = None, num_latents: int | None = None,
                 stride: int = 1, return_logits: bool = False
                 ) -> Tensor | tuple[Tensor, Tensor]:
        """Continues ``prompt_ids`` (batch, T) by ``max_new_tokens`` sampled tokens ->
        (batch, T + max_new_tokens); with ``return_logits`` also the logits each token was
        drawn from (batch, max_new_tokens, vocab_size).

        Each token is drawn from the logits of the last position given the last
        ``max_context`` tokens (a prompt may be longer) with ``num_latents`` latents (default
        the model's), as :meth:`forward` would compute them, but with a cache (see the module
        docstring). ``stride`` > 1 trades that for speed: the window of the last
        ``max_context`` tokens moves ``stride`` tokens at once when it is full, and between
        moves every new token adds a latent (up to ``num_latents + stride - 1``), so that a
        token costs one latent instead of ``num_latents``. With a stride, ``num_latents``
        defaults to the model's minus ``stride - 1``: every token then sees at most as many
        latents as in training (more cost the model accuracy it was never trained for:
        docs/perceiver-ar.md). ``temperature`` divides the logits (0: greedy, the most
        likely token); ``top_k`` keeps the k most likely tokens, ``top_p`` the most likely
        tokens whose probabilities add up to ``top_p``; ``seed`` makes the draws
        reproducible. ``mask`` (batch, T) bool, False = padding, for left-padded prompts
        (each row needs a real token); a row's padding stays in its window until it slides
        out. Dropout follows the model's mode: call ``model.eval()`` first. :meth:`stream`
        yields the tokens one by one as they are drawn.
        """
        ids = check_token_ids(prompt_ids, vocab_size=self.vocab_size, max_length=sys.maxsize,
                              name="prompt_ids")
        steps = list(self.stream(ids, max_new_tokens, temperature, top_k, top_p, seed,
                                 mask=mask, num_latents=num_latents, stride=stride))
        out = torch.cat([ids, *(token[:, None] for token, _ in steps)], dim=1)
        if return_logits:
            empty = self.to_logits.weight.new_zeros(ids.shape[0], 0, self.vocab_size)
            return out, torch.stack([step for _, step in steps], dim=1) if steps else empty
        return out

    @torch.no_grad()
    def stream(self, prompt_ids: Tensor, max_new_tokens: int, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
               *, mask: Tensor | None = None, num_latents: int | None = None,
               stride: int = 1) -> Iterator[tuple[Tensor, Tensor]]:
        """:meth:`generate`, one token at a time: yields ``(tokens, logits)``, the new token
        of every row (batch,) and the logits it was drawn from (batch, vocab_size), as soon
        as it is drawn. The arguments are checked when the first token is asked for."""
        ids = check_token_ids(prompt_ids, vocab_size=self.vocab_size, max_length=sys.maxsize,
                              name="prompt_ids")
        batch, length = ids.shape
        mask = check_mask(mask, batch=batch, axes=(length,))
        mask = ids.new_ones(batch, length, dtype=torch.bool) if mask is None else mask
        if not mask.any(dim=1).all():
            raise ValueError("every prompt needs a real token: mask has a row of padding only")
        if isinstance(stride, bool) or not isinstance(stride, int) \
                or not 1 <= stride <= self.max_context:
            raise ValueError(f"stride must be an int in [1, max_context={self.max_context}], "
                             f"got {stride!r}")
        if num_latents is None:  # at most the model's latents, as in training
            num_latents = max(1, self.num_latents - stride + 1)
        num_latents = self._check_num_latents(num_latents, self.max_context)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
                or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        check_sampling(temperature, top_k, top_p)
        schedule = WindowSchedule(self.max_context, num_latents, stride)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=ids.device).manual_seed(seed)

        if self.position_embedding is not None or self.separate_latent_norm:
            yield from self._stream_without_cache(ids, mask, max_new_tokens, schedule,
                                                  (temperature, top_k, top_p, generator))
            return
        positions = padded_positions(mask)
        next_position = positions[:, -1:] + 1
        cache, new_ids, new_positions, new_mask = None, ids, positions, mask
        window, latent_count = schedule.start(length)
        for _ in range(max_new_tokens):
            latents, cache = self._extend(cache, new_ids, new_positions, new_mask, latent_count,
                                          window)
            step = self.to_logits(self.norm(latents[:, -1]))  # (batch, vocab_size)
            token = sample_token(step, temperature, top_k, top_p, generator)
            yield token, step
            new_ids = token[:, None]
            new_positions, new_mask = next_position, new_ids.new_ones(batch, 1, dtype=torch.bool)
            next_position = next_position + 1
            window, latent_count = schedule.next(window, latent_count)

    def _stream_without_cache(self, ids: Tensor, mask: Tensor, max_new_tokens: int,
                              schedule: WindowSchedule, sampling: tuple
                              ) -> Iterator[tuple[Tensor, Tensor]]:
        """:meth:`stream` for models whose keys change as the window slides: each token
        recomputes the latents of its window, as :meth:`forward`."""
        window, latent_count = schedule.start(ids.shape[1])
        for _ in range(max_new_tokens):
            window_ids, window_mask = ids[:, -window:], mask[:, -window:]
            latents, _ = self._extend(None, window_ids, self._positions(window_mask),
                                      window_mask, latent_count, window)
            step = self.to_logits(self.norm(latents[:, -1]))  # (batch, vocab_size)
            token = sample_token(step, *sampling)
            yield token, step
            ids = torch.cat([ids, token[:, None]], dim=1)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            window, latent_count = schedule.next(window, latent_count)


@dataclass(frozen=True)
class WindowSchedule:
    """Which window and how many latents each generated token is drawn from: the window
    grows to ``max_context`` tokens and then moves ``stride`` at once (to ``max_context -
    stride + 1``); the latents grow by one a token to ``num_latents + stride - 1`` and then
    fall back to ``num_latents``. ``stride=1``: the last ``max_context`` tokens and
    ``num_latents`` latents, always (as :meth:`PerceiverAR.forward`)."""

    max_context: int
    num_latents: int
    stride: int

    def start(self, prompt_length: int) -> tuple[int, int]:
        """(window, latents) of the first token after a prompt of ``prompt_length``."""
        window = min(prompt_length, self.max_context)
        return window, min(self.num_latents, window)

    def next(self, window: int, latents: int) -> tuple[int, int]:
        """(window, latents) of the token after one drawn from ``window`` and ``latents``."""
        window, latents = window + 1, latents + 1
        if window > self.max_context:
            window, latents = self.max_context - self.stride + 1, self.num_latents
        if latents >= self.num_latents + self.stride:
            latents = self.num_latents
        return window, min(latents, window)


def padded_positions(mask: Tensor) -> Tensor:
    """(batch, n) bool, False = left padding -> absolute positions (batch, n): a row's first
    real token is at 0 (padding, never attended, at 0 too)."""
    return (mask.long().cumsum(dim=1) - 1).clamp_min(0)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                              or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1] or be None, got {top_p!r}")


def sample_token(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """One token per row of ``logits`` (batch, vocab_size) -> (batch,) long."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # the probability of the more likely tokens
        drop = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before >= top_p)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)[:, 0]


__all__ = ["PerceiverAR", "RotaryAttentionLayer", "GenerationCache", "KeyValueWindow",
           "causal_mask", "padded_positions", "sample_token"]
