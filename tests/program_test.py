"""Tests for the Program: the state layout and the one guarded, jitted step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

from nlhf_jax import optimizers
from nlhf_jax import partitioning
from nlhf_jax import program as program_lib
from nlhf_jax.train_state import Frozen


class _Dense(nn.Module):
  """One 256x128 kernel: large enough for Adafactor to factor it."""

  @nn.compact
  def __call__(self, x):
    w = self.param("w", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("embed", "mlp")), (256, 128))
    return x @ w


def _init(seed=0):
  return lambda: _Dense().init(jax.random.PRNGKey(seed),
                               jnp.ones((1, 256)))["params"]


def _mesh():
  return partitioning.make_mesh(partitioning.MeshConfig(data=2, fsdp=2,
                                                        model=2))


def _sgd_step(state, batch, rng, frozen=None):
  """Squared scaled output of the layer, plus Σ frozen.reference (if any)."""
  offset = 0.0 if frozen is None else frozen.reference["w"].sum()

  def loss_fn(params):
    pred = (batch["x"] @ params["w"]) * batch["scale"][:, None]
    return jnp.mean(jnp.square(pred)) + offset

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  noise = jax.random.uniform(rng, ())
  return state.apply_gradients(grads), {"loss": loss, "noise": noise}


def _program(tx=None, **kw):
  return program_lib.build(mesh=_mesh(), init_fn=_init(),
                           tx=tx or optax.sgd(0.1), step_fn=_sgd_step, **kw)


def _batch(program, scale=1.0):
  batch = {"x": np.ones((8, 256), np.float32),
           "scale": np.full((8,), scale, np.float32)}
  return jax.device_put(batch, program.batch_sharding)


def _rng(program, seed=0):
  return jax.device_put(jax.random.PRNGKey(seed),
                        partitioning.replicated(program.mesh))


def test_state_shardings_follow_params_and_factored_moments():
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig(), 10)
  program = _program(tx, with_ema=True)
  state = program.create_state(program.fresh_params())
  assert program.state_shardings.params["w"].spec == P("fsdp", "model")
  assert state.params["w"].sharding.spec == P("fsdp", "model")
  assert state.ema_params["w"].sharding.spec == P("fsdp", "model")
  assert program.abstract_state.params["w"].sharding.spec == P("fsdp",
                                                               "model")
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
  program = _program(tx)
  state = program.create_state(program.fresh_params())
  adam = state.opt_state[1][0]
  assert adam.mu["w"].sharding.spec == P("fsdp", "model")
  assert adam.nu["w"].sharding.spec == P("fsdp", "model")
  assert state.ema_params is None


def test_create_from_given_params_places_them():
  params = jax.tree.map(lambda x: x + 1.0, nn.unbox(_init()()))
  program = _program()
  state = program.create_state(params)
  np.testing.assert_array_equal(state.params["w"], params["w"])
  assert state.params["w"].sharding.spec == P("fsdp", "model")


def test_step_folds_the_step_into_the_rng_and_compiles_once():
  program = _program()
  state = program.create_state(program.fresh_params())
  noises = []
  for _ in range(3):
    state, metrics = program.step(state, _batch(program), _rng(program))
    noises.append(float(metrics["noise"]))
    assert bool(metrics["finite"])
  assert int(state.step) == 3 and program.num_traces == 1
  expected = [float(jax.random.uniform(
      jax.random.fold_in(jax.random.PRNGKey(0), i), ())) for i in range(3)]
  np.testing.assert_allclose(noises, expected, rtol=1e-6)


@pytest.mark.parametrize("skip", [False, True])
def test_nonfinite_loss_is_flagged_and_skipped_only_when_asked(skip):
  program = _program(skip_nonfinite=skip)
  state = program.create_state(program.fresh_params())
  before = np.asarray(state.params["w"])
  state, metrics = program.step(state, _batch(program, np.nan),
                                _rng(program))
  assert not bool(metrics["finite"])
  assert int(state.step) == 1
  after = np.asarray(state.params["w"])
  if skip:
    np.testing.assert_array_equal(after, before)
  else:
    assert np.isnan(after).all()


def test_frozen_models_are_laid_out_and_passed_by_role():
  program = _program(frozen_init=Frozen(reference=_init(seed=3)))
  assert program.abstract_frozen.judge is None
  assert program.abstract_frozen.reference["w"].sharding.spec == P(
      "fsdp", "model")
  reference = partitioning.sharded_init(_init(seed=3), program.mesh)[0]
  plain = _program()
  params = program.fresh_params()
  _, without = plain.step(plain.create_state(params), _batch(plain),
                          _rng(plain))
  _, metrics = program.step(program.create_state(params), _batch(program),
                            _rng(program), Frozen(reference=reference))
  np.testing.assert_allclose(
      float(metrics["loss"]),
      float(without["loss"]) + float(np.sum(np.asarray(reference["w"]))),
      rtol=1e-5)


def test_lower_compiles_the_same_step_without_allocating():
  program = _program(frozen_init=Frozen(reference=_init(seed=3)))
  batch = {"x": jax.ShapeDtypeStruct((8, 256), jnp.float32),
           "scale": jax.ShapeDtypeStruct((8,), jnp.float32)}
  compiled = program.lower(batch).compile()
  assert compiled.memory_analysis().argument_size_in_bytes > 0
  assert program.num_traces == 1  # Lowering traced the guarded step.


def test_abstract_params_without_mesh_sit_on_one_device():
  abstract = program_lib.abstract_params(_init())
  assert abstract["w"].shape == (256, 128)
  assert abstract["w"].sharding == jax.sharding.SingleDeviceSharding(
      jax.devices()[0])
