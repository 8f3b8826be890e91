"""Tests for TrainState, Frozen and the logical axes of optimizer state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nlhf_jax import train_state as ts


def test_apply_gradients_matches_sgd_and_counts_steps():
  params = {"w": jnp.array([1.0, 2.0])}
  state = ts.TrainState.create(params, optax.sgd(0.5))
  state = state.apply_gradients({"w": jnp.array([2.0, -2.0])})
  np.testing.assert_allclose(state.params["w"], [0.0, 3.0])
  assert int(state.step) == 1


def test_frozen_is_a_pytree_by_role():
  frozen = ts.Frozen(reference={"w": jnp.ones(2)})
  assert jax.tree.leaves(frozen) == [frozen.reference["w"]]
  doubled = jax.tree.map(lambda x: 2 * x, frozen)
  assert doubled.judge is None
  np.testing.assert_array_equal(doubled.reference["w"], [2.0, 2.0])


def test_derived_axes_rules():
  axes = ("embed", "mlp")
  assert ts._derived_axes((4, 8), (4, 8), axes) == axes
  assert ts._derived_axes((4,), (4, 8), axes) == ("embed",)
  assert ts._derived_axes((8,), (4, 8), axes) == ("mlp",)
  assert ts._derived_axes((1,), (4, 8), axes) == (None,)
