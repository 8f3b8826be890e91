"""nlhf_jax.adafactor against optax.adafactor and its two variants against
each other, step by step; OptimizerConfig's optimizer names."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nlhf_jax import adafactor
from nlhf_jax import optimizers
from nlhf_jax.errors import ConfigError


def _tree(key):
  """Parameters of every kind Adafactor treats differently."""
  shapes = {
      "factored": (256, 160),        # both axes >= 128: row/col moments
      "factored_t": (130, 300),      # largest axis first
      "small_matrix": (64, 160),     # second axis < 128: full moment
      "heads": (160, 6, 140),        # 3-D, factored over axes 0 and 2
      "heads_small": (160, 6, 64),   # 3-D, not factored
      "vector": (300,),
      "scalar_like": (1,),
  }
  keys = jax.random.split(key, len(shapes))
  return {name: jax.random.normal(k, shape) * 0.3
          for (name, shape), k in zip(shapes.items(), keys)}


def _run(tx, params, grads_seq):
  state = tx.init(params)
  update = jax.jit(tx.update)
  out = []
  for grads in grads_seq:
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    out.append((updates, state, params))
  return out


def _grads_seq(params, steps=4):
  return [
      jax.tree.map(lambda p, k=k: p * 0 + jax.random.normal(k, p.shape)
                   * (1.0 + 5 * i), params)
      for i, k in enumerate(jax.random.split(jax.random.PRNGKey(1), steps))]


def _assert_close_steps(ours, ref, rel):
  """Updates, states and parameters agree to `rel` of each leaf's scale."""
  for (u, s, p), (u_ref, s_ref, p_ref) in zip(ours, ref):
    assert (jax.tree.structure(s) == jax.tree.structure(s_ref))
    for a, b in zip(jax.tree.leaves((u, s, p)),
                    jax.tree.leaves((u_ref, s_ref, p_ref))):
      assert a.shape == b.shape and a.dtype == b.dtype
      a, b = np.asarray(a), np.asarray(b)
      assert np.abs(a - b).max() <= rel * np.abs(b).max() + 1e-30


@pytest.mark.parametrize("pairwise_means", [False, True])
@pytest.mark.parametrize("kwargs", [
    {},
    {"multiply_by_parameter_scale": False},
    {"weight_decay_rate": 0.1, "decay_rate": 0.7},
    {"clipping_threshold": None},
])
def test_matches_optax_adafactor(kwargs, pairwise_means):
  params = _tree(jax.random.PRNGKey(0))
  grads_seq = _grads_seq(params)
  lr = optax.linear_schedule(1e-2, 1e-3, 4)
  ours = _run(adafactor.adafactor(lr, pairwise_means=pairwise_means,
                                  **kwargs), params, grads_seq)
  ref = _run(optax.adafactor(lr, **kwargs), params, grads_seq)
  # rsqrt and pow(., -0.5) differ in the last bits: updates agree to a
  # few float32 ulps of each leaf's scale.
  _assert_close_steps(ours, ref, 1e-6)
  # The updates are not trivially zero and clipping is active.
  first = ours[0][0]
  assert float(jnp.abs(first["factored"]).max()) > 1e-4


def test_portable_and_fused_optimizers_are_interchangeable():
  """OptimizerConfig 'adafactor' and 'adafactor_fused': same state
  structure, updates equal to float32 summation order over 8 steps, on
  factored and unfactored leaves; a run may switch between them."""
  params = _tree(jax.random.PRNGKey(0))
  grads_seq = _grads_seq(params, steps=8)
  make = lambda name: optimizers.make_optimizer(
      optimizers.OptimizerConfig(name=name, learning_rate=1e-2,
                                 schedule="linear", weight_decay=0.01), 8)
  portable = _run(make("adafactor"), params, grads_seq)
  fused = _run(make("adafactor_fused"), params, grads_seq)
  _assert_close_steps(fused, portable, 1e-6)
  # The tree has factored leaves (row/column moments) and unfactored ones.
  state = portable[-1][1][0]
  assert state.v_row["factored"].shape == (160,)
  assert state.v["small_matrix"].shape == (64, 160)
  # The fused variant continues from the portable one's state (a run that
  # switches backend files mid-way).
  update = jax.jit(make("adafactor_fused").update)
  _, state, switched = portable[3]
  for grads in grads_seq[4:]:
    updates, state = update(grads, state, switched)
    switched = optax.apply_updates(switched, updates)
  for a, b in zip(jax.tree.leaves(switched),
                  jax.tree.leaves(portable[-1][2])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["Adafactor", "adafactor_cpu", "sgd", ""])
def test_unknown_optimizer_name_is_a_config_error_naming_the_choices(name):
  with pytest.raises(ConfigError, match=r"OptimizerConfig\.name.*"
                     r"'adafactor', 'adafactor_fused', 'adamw'"):
    optimizers.OptimizerConfig(name=name)


def test_factored_dims_follow_optax_rule():
  assert adafactor.factored_dims((256, 160), 128) == (1, 0)
  assert adafactor.factored_dims((130, 300), 128) == (0, 1)
  assert adafactor.factored_dims((64, 160), 128) is None
  assert adafactor.factored_dims((160, 6, 140), 128) == (2, 0)
  assert adafactor.factored_dims((300,), 128) is None


def test_param_rms_needs_params():
  tx = adafactor.scale_by_param_rms()
  with pytest.raises(ValueError, match="parameters"):
    tx.update({"w": jnp.ones(3)}, tx.init({"w": jnp.ones(3)}), None)


@pytest.mark.parametrize("shape,axis", [((512, 300), 0), ((7, 5), 0),
                                        ((6, 9, 4), 1), ((5, 8), 1),
                                        ((1, 3), 0)])
@pytest.mark.parametrize("pairwise", [False, True])
def test_axis_mean_equals_mean(shape, axis, pairwise):
  x = jax.random.normal(jax.random.PRNGKey(2), shape) ** 2
  got = jax.jit(lambda y: adafactor.axis_mean(y, axis, pairwise))(x)
  np.testing.assert_allclose(got, np.asarray(x).mean(axis), rtol=1e-6)
