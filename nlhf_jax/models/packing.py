"""Encoder-input layouts of the preference and reward models (jit-able).

Both scorers read one token sequence. From already tokenised, zero-padded
arrays (prompt = `encoder_input_tokens`, responses = decoder targets, each
ending with EOS), `pack` builds, per row,

  [prompt content][marker_1][response_1 content]...[marker_k][response_k
  content][EOS][0 ... 0]

where "content" drops padding (0) and EOS (1) tokens and the markers are
fixed token sequences (e.g. the tokenisation of " Summary 1:"). When the
row is longer than `length`, the prompt is cut (its first tokens are kept);
responses and markers are never cut, so `length` must fit the markers, the
padded response lengths and the final EOS (checked when tracing).

Preference model: pack(x, [y, y'], [" Summary 1:", " Summary 2:"]);
reward model: pack(x, [y], [" Summary:"]).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from nlhf_jax import sampling

Array = jax.Array
PAD_ID = sampling.PAD_ID
EOS_ID = sampling.EOS_ID


def _content(tokens_bt: Array) -> Array:
  return (tokens_bt != PAD_ID) & (tokens_bt != EOS_ID)


def _scatter(out_bl: Array, tokens_bt: Array, keep_bt: Array,
             offset_b: Array, dump: int) -> Array:
  """Writes the kept tokens of each row contiguously from `offset_b`."""
  pos = jnp.cumsum(keep_bt, axis=1) - 1 + offset_b[:, None]
  pos = jnp.where(keep_bt, pos, dump)
  rows = jnp.arange(tokens_bt.shape[0])[:, None]
  return out_bl.at[rows, pos].set(jnp.where(keep_bt, tokens_bt, PAD_ID))


def min_length(response_lengths: Sequence[int],
               markers: Sequence[Sequence[int]]) -> int:
  """Smallest `length` that fits the markers, responses and EOS."""
  return sum(len(m) for m in markers) + sum(response_lengths) + 1


def pack(prompt_bt: Array, responses: Sequence[Array],
         markers: Sequence[Sequence[int]], length: int) -> Array:
  """Packs prompt and responses into one encoder input (module docstring).

  Args:
    prompt_bt: prompt tokens [b, Lx] (EOS and zero padding allowed).
    responses: k arrays [b, L_i] of response tokens (EOS, zero padding).
    markers: k token-id sequences, one before each response.
    length: output length.

  Returns:
    int32 [b, length].

  Raises:
    ValueError: `len(markers) != len(responses)`, or `length` cannot hold
      the markers, the padded responses and EOS.
  """
  if len(markers) != len(responses):
    raise ValueError(f"{len(responses)} responses but {len(markers)} "
                     "markers.")
  needed = min_length([r.shape[1] for r in responses], markers)
  if length < needed:
    raise ValueError(
        f"Packed length {length} cannot hold the markers "
        f"({[len(m) for m in markers]} tokens), the responses (padded to "
        f"{[r.shape[1] for r in responses]}) and EOS: need >= {needed}.")
  prompt_bt = jnp.asarray(prompt_bt, jnp.int32)
  b = prompt_bt.shape[0]
  keep = [_content(jnp.asarray(r, jnp.int32)) for r in responses]
  fixed = sum(len(m) for m in markers) + 1 + sum(
      k.sum(axis=1) for k in keep)
  prompt_keep = _content(prompt_bt)
  prompt_len = jnp.minimum(prompt_keep.sum(axis=1), length - fixed)
  prompt_keep &= jnp.cumsum(prompt_keep, axis=1) <= prompt_len[:, None]
  out = jnp.zeros((b, length + 1), jnp.int32)  # Last column: discarded.
  out = _scatter(out, prompt_bt, prompt_keep, jnp.zeros(b, jnp.int32),
                 length)
  offset = prompt_len.astype(jnp.int32)
  for marker, response, response_keep in zip(markers, responses, keep):
    if len(marker):
      ids = jnp.broadcast_to(jnp.asarray(marker, jnp.int32), (b, len(marker)))
      out = _scatter(out, ids, jnp.ones_like(ids, bool), offset, length)
      offset = offset + len(marker)
    out = _scatter(out, jnp.asarray(response, jnp.int32), response_keep,
                   offset, length)
    offset = offset + response_keep.sum(axis=1).astype(jnp.int32)
  out = out.at[jnp.arange(b), offset].set(EOS_ID)
  return out[:, :length]
