"""Tests for the scorers' packed encoder layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlhf_jax.models import packing


def test_pack_layout_strips_eos_and_padding():
  prompt = jnp.array([[10, 11, 12, 1, 0, 0]])
  a = jnp.array([[20, 21, 1, 0]])
  b = jnp.array([[30, 1, 0, 0]])
  out = packing.pack(prompt, [a, b], [(7,), (8, 9)], 12)
  np.testing.assert_array_equal(
      out, [[10, 11, 12, 7, 20, 21, 8, 9, 30, 1, 0, 0]])


def test_pack_cuts_the_prompt_only_and_per_row():
  prompt = jnp.array([[10, 11, 12, 13, 14, 1], [10, 11, 1, 0, 0, 0]])
  a = jnp.array([[20, 21, 1], [20, 1, 0]])
  out = packing.pack(prompt, [a], [(7,)], 7)
  # Row 0: 7 - (marker 1 + summary 2 + EOS 1) = 3 prompt tokens kept.
  np.testing.assert_array_equal(out, [[10, 11, 12, 7, 20, 21, 1],
                                      [10, 11, 7, 20, 1, 0, 0]])


def test_pack_is_jittable_and_checks_length():
  prompt = jnp.ones((2, 5), jnp.int32) * 4
  a = jnp.ones((2, 3), jnp.int32) * 5
  out = jax.jit(lambda p, r: packing.pack(p, [r, r], [(7,), (8,)], 9))(
      prompt, a)
  assert out.shape == (2, 9)
  with pytest.raises(ValueError, match="need >= 9"):
    packing.pack(prompt, [a, a], [(7,), (8,)], 8)
  with pytest.raises(ValueError, match="2 responses but 1 markers"):
    packing.pack(prompt, [a, a], [(7,)], 20)
