"""Tests for TrainState, FrozenParams and the sharded state layout."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

from nlhf_jax import optimizers
from nlhf_jax import partitioning
from nlhf_jax import train_state as ts


class _Dense(nn.Module):
  """One 256x128 kernel: large enough for Adafactor to factor it."""

  @nn.compact
  def __call__(self, x):
    w = self.param("w", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("embed", "mlp")), (256, 128))
    return x @ w


def _init():
  return _Dense().init(jax.random.PRNGKey(0), jnp.ones((1, 256)))["params"]


def _mesh():
  return partitioning.make_mesh(partitioning.MeshConfig(data=2, fsdp=2,
                                                        model=2))


def test_state_shardings_follow_params_and_factored_moments():
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig(), 10)
  state, shardings = ts.create_sharded(_init, tx, _mesh(), with_ema=True)
  assert shardings.params["w"].spec == P("fsdp", "model")
  assert state.params["w"].sharding.spec == P("fsdp", "model")
  assert state.ema_params["w"].sharding.spec == P("fsdp", "model")
  factored = state.opt_state[0]
  # Adafactor keeps factored statistics of shapes [128] and [256]; each
  # inherits the axis of the dimension it keeps.
  stats = {x.shape: x.sharding.spec for x in (factored.v_row["w"],
                                              factored.v_col["w"])}
  assert stats == {(256,): P("fsdp"), (128,): P("model")}
  assert state.step.sharding.spec == P()
  np.testing.assert_array_equal(state.params["w"], state.ema_params["w"])


def test_adamw_moments_share_the_param_sharding():
  tx = optimizers.make_optimizer(
      optimizers.OptimizerConfig(name="adamw", grad_clip_norm=1.0), 10)
  state, _ = ts.create_sharded(_init, tx, _mesh())
  adam = state.opt_state[1][0]
  assert adam.mu["w"].sharding.spec == P("fsdp", "model")
  assert adam.nu["w"].sharding.spec == P("fsdp", "model")
  assert state.ema_params is None


def test_create_from_given_params_places_them():
  params = nn.unbox(_init())
  params = jax.tree.map(lambda x: x + 1.0, params)
  tx = optax.sgd(0.1)
  state, _ = ts.create_sharded(_init, tx, _mesh(), params=params)
  np.testing.assert_array_equal(state.params["w"], params["w"])
  assert state.params["w"].sharding.spec == P("fsdp", "model")


def test_apply_gradients_matches_sgd_and_counts_steps():
  params = {"w": jnp.array([1.0, 2.0])}
  state = ts.TrainState.create(params, optax.sgd(0.5))
  state = state.apply_gradients({"w": jnp.array([2.0, -2.0])})
  np.testing.assert_allclose(state.params["w"], [0.0, 3.0])
  assert int(state.step) == 1


def test_frozen_params_block_gradients():
  frozen = ts.FrozenParams(params={"w": jnp.array(3.0)})

  def loss(f, x):
    return f.value["w"] * x

  g_frozen = jax.grad(loss)(frozen, 2.0)
  assert float(g_frozen.params["w"]) == 0.0
  assert float(jax.grad(loss, argnums=1)(frozen, 2.0)) == 3.0


def test_derived_axes_rules():
  axes = ("embed", "mlp")
  assert ts._derived_axes((4, 8), (4, 8), axes) == axes
  assert ts._derived_axes((4,), (4, 8), axes) == ("embed",)
  assert ts._derived_axes((8,), (4, 8), axes) == ("mlp",)
  assert ts._derived_axes((1,), (4, 8), axes) == (None,)
