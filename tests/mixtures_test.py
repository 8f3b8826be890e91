"""Closed-form tests of the geometric mixture and the parameter EMA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlhf_jax import mixtures


def _log_probs(seed, shape):
  logits = np.random.default_rng(seed).normal(size=shape) * 2.0
  return np.array(jax.nn.log_softmax(jnp.asarray(logits, jnp.float32)))


def test_two_token_mixture_by_hand():
  # π = (1/2, 1/2), μ = (1/8, 7/8), β = 1/3: weights π^{2/3} μ^{1/3}
  # = 2^{-2/3}·(8^{-1/3}, (7/8)^{1/3}) = 2^{-2/3}·(1/2, 7^{1/3}/2).
  pi = np.log([0.5, 0.5])
  mu = np.log([1 / 8, 7 / 8])
  unnorm = np.array([0.5, 7 ** (1 / 3) / 2]) * 2 ** (-2 / 3)
  got = mixtures.geometric_mixture_log_probs(jnp.asarray(pi), jnp.asarray(mu),
                                             1 / 3)
  np.testing.assert_allclose(np.exp(got), unnorm / unnorm.sum(), rtol=1e-6)
  log_c = mixtures.geometric_mixture_log_normalizer(
      jnp.asarray(pi), jnp.asarray(mu), 1 / 3)
  np.testing.assert_allclose(log_c, np.log(unnorm.sum()), rtol=1e-6)


def test_half_mixture_is_normalised_bhattacharyya():
  lp, lq = _log_probs(0, (5, 17)), _log_probs(1, (5, 17))
  p, q = np.exp(lp), np.exp(lq)
  bc = np.sqrt(p * q).sum(-1)
  np.testing.assert_allclose(
      mixtures.geometric_mixture_log_normalizer(lp, lq, 0.5), np.log(bc),
      rtol=1e-5)
  np.testing.assert_allclose(
      np.exp(mixtures.geometric_mixture_log_probs(lp, lq, 0.5)),
      np.sqrt(p * q) / bc[:, None], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_normaliser_is_at_most_one_and_one_when_equal(beta):
  lp, lq = _log_probs(2, (8, 11)), _log_probs(3, (8, 11))
  log_c = np.asarray(mixtures.geometric_mixture_log_normalizer(lp, lq, beta))
  assert (log_c < 0).all()          # Hölder, strict as π ≠ μ.
  np.testing.assert_allclose(
      mixtures.geometric_mixture_log_normalizer(lp, lp, beta), 0.0,
      atol=1e-6)
  probs = np.exp(mixtures.geometric_mixture_log_probs(lp, lq, beta))
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)


def test_end_points_are_exact_even_with_minus_inf():
  lp, lq = _log_probs(4, (3, 9)), _log_probs(5, (3, 9))
  lq[:, 0] = -np.inf     # 0·(−inf) would be NaN without the exact branch.
  lp[:, 1] = -np.inf
  np.testing.assert_array_equal(
      mixtures.geometric_mixture_logits(lp, lq, 0.0), lp)
  np.testing.assert_array_equal(
      mixtures.geometric_mixture_logits(lp, lq, 1.0), lq)
  # Also with a traced β.
  fn = jax.jit(mixtures.geometric_mixture_logits)
  np.testing.assert_array_equal(fn(lp, lq, jnp.float32(0.0)), lp)
  np.testing.assert_array_equal(fn(lp, lq, jnp.float32(1.0)), lq)


def test_temperature_commutes_with_the_geometric_mixture():
  # Log-linear pooling: mixing tempered normalised models equals tempering
  # the mixture, after normalisation.
  lp, lq = _log_probs(6, (4, 13)), _log_probs(7, (4, 13))
  temperature, beta = 0.6, 0.3
  tempered_then_mixed = mixtures.geometric_mixture_log_probs(
      jax.nn.log_softmax(lp / temperature), jax.nn.log_softmax(
          lq / temperature), beta)
  mixed_then_tempered = jax.nn.log_softmax(
      mixtures.geometric_mixture_logits(lp, lq, beta) / temperature)
  np.testing.assert_allclose(tempered_then_mixed, mixed_then_tempered,
                             atol=1e-5)


def test_mixture_rejects_bad_input():
  lp = _log_probs(8, (2, 5))
  with pytest.raises(ValueError, match="same shape"):
    mixtures.geometric_mixture_logits(lp, lp[:, :4], 0.5)
  with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
    mixtures.geometric_mixture_logits(lp, lp, 1.5)


def test_ema_update_closed_form_and_end_points():
  ema = {"w": jnp.array([1.0, 2.0]), "b": {"x": jnp.array(3.0)}}
  params = {"w": jnp.array([5.0, -2.0]), "b": {"x": jnp.array(-1.0)}}
  out = mixtures.ema_update(ema, params, 0.75)
  np.testing.assert_allclose(out["w"], [0.75 * 1 + 0.25 * 5,
                                        0.75 * 2 + 0.25 * -2])
  np.testing.assert_allclose(out["b"]["x"], 0.75 * 3 + 0.25 * -1)
  for decay, expected in ((1.0, ema), (0.0, params)):
    got = mixtures.ema_update(ema, params, decay)
    jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_ema_converges_geometrically_to_constant_params():
  ema = {"w": jnp.zeros((3,))}
  target = {"w": jnp.array([1.0, -2.0, 4.0])}
  step = jax.jit(mixtures.ema_update)
  for _ in range(10):
    ema = step(ema, target, jnp.float32(0.9))
  # θ̄_n = θ + d^n (θ̄_0 − θ).
  np.testing.assert_allclose(ema["w"], target["w"] * (1 - 0.9 ** 10),
                             rtol=1e-5)


def test_ema_keeps_dtype_and_rejects_mismatches():
  ema = {"w": jnp.ones((2,), jnp.bfloat16)}
  out = mixtures.ema_update(ema, {"w": jnp.zeros((2,), jnp.bfloat16)}, 0.5)
  assert out["w"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(out["w"], np.float32), [0.5, 0.5])
  with pytest.raises(ValueError, match="different tree structures"):
    mixtures.ema_update(ema, {"v": jnp.ones((2,))}, 0.5)
  with pytest.raises(ValueError, match=r"\['w'\] has shape"):
    mixtures.ema_update(ema, {"w": jnp.ones((3,))}, 0.5)
  with pytest.raises(ValueError, match=r"decay must be in \[0, 1\]"):
    mixtures.ema_update(ema, ema, -0.1)
