"""Closed-form checks of nlhf_jax.losses."""

import jax
import jax.numpy as jnp
from jax import test_util as jtu
import numpy as np
import pytest

from nlhf_jax import losses


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_sequence_logprobs_matches_manual_sum():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 5)).astype(np.float32)
  tokens = rng.integers(0, 5, size=(2, 4))
  mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], np.float32)
  logp = _log_softmax(logits)
  want = [sum(logp[b, t, tokens[b, t]] * mask[b, t] for t in range(4))
          for b in range(2)]
  got = losses.sequence_logprobs(logits, tokens, mask)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_sequence_logprobs_of_uniform_logits_is_minus_length_log_v():
  logits = jnp.zeros((3, 6, 8))
  tokens = jnp.ones((3, 6), jnp.int32)
  mask = jnp.array([[1] * 6, [1] * 3 + [0] * 3, [0] * 6], jnp.float32)
  got = losses.sequence_logprobs(logits, tokens, mask)
  np.testing.assert_allclose(got, [-6 * np.log(8), -3 * np.log(8), 0.0],
                             rtol=1e-6)


def test_token_cross_entropy_is_negative_masked_logprob():
  logits = jnp.array([[[2.0, 0.0], [0.0, 0.0]]])
  targets = jnp.array([[0, 1]])
  weights = jnp.array([[1.0, 0.0]])
  got = losses.token_cross_entropy(logits, targets, weights)
  np.testing.assert_allclose(got, [[np.log1p(np.exp(-2.0)), 0.0]], rtol=1e-6)


def test_token_logprobs_gradient_is_onehot_minus_softmax():
  """The hand-written VJP against the closed form g (onehot - softmax)."""
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(2, 3, 7)).astype(np.float32) * 3
  tokens = rng.integers(0, 7, size=(2, 3))
  g = rng.normal(size=(2, 3)).astype(np.float32)
  value, vjp = jax.vjp(lambda x: losses.token_logprobs(x, tokens), logits)
  logp = _log_softmax(logits)
  np.testing.assert_allclose(
      value, np.take_along_axis(logp, tokens[..., None], -1)[..., 0],
      rtol=1e-5)
  (grad,) = vjp(jnp.asarray(g))
  want = (np.eye(7)[tokens] - np.exp(logp)) * g[..., None]
  np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-6)
  # bf16 logits get a bf16 cotangent; second call under jit and grad.
  grad_bf16 = jax.jit(jax.grad(
      lambda x: losses.token_logprobs(x, tokens).sum()))(
          jnp.asarray(logits, jnp.bfloat16))
  assert grad_bf16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(grad_bf16, np.float32),
                             np.eye(7)[tokens] - np.exp(logp), atol=2e-2)


def test_token_is_top1_matches_argmax_without_ties():
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(3, 5, 11)).astype(np.float32)
  targets = rng.integers(0, 11, size=(3, 5))
  targets[0, :] = logits[0].argmax(-1)  # some hits for sure
  got = losses.token_is_top1(logits, targets)
  np.testing.assert_array_equal(got, logits.argmax(-1) == targets)
  assert got.dtype == jnp.float32 and 5 <= float(got.sum()) < 15


def test_token_logprobs_of_out_of_range_token_is_nan():
  """An id outside the vocabulary poisons the loss instead of reading 0."""
  got = losses.token_logprobs(jnp.zeros((1, 1, 4)), jnp.array([[9]]))
  assert np.isnan(np.asarray(got)).all()


@pytest.mark.parametrize("z,label", [(0.0, 1.0), (3.0, 1.0), (3.0, 0.0),
                                     (-2.0, 0.25), (40.0, 0.0), (-40.0, 1.0)])
def test_preference_bce_closed_form(z, label):
  # -log σ(z) = log(1 + e^-z), written with logaddexp to stay finite.
  z64 = np.float64(z)
  want = label * np.logaddexp(0, -z64) + (1 - label) * np.logaddexp(0, z64)
  got = float(losses.preference_bce(jnp.array([z]), jnp.array([label]))[0])
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_preference_bce_gradient_is_sigmoid_minus_label():
  z = jnp.array([-1.5, 0.3, 2.0])
  labels = jnp.array([1.0, 0.0, 0.7])
  grad = jax.grad(lambda z: losses.preference_bce(z, labels).sum())(z)
  np.testing.assert_allclose(grad, jax.nn.sigmoid(z) - labels, atol=1e-6)
  jtu.check_grads(lambda z: losses.preference_bce(z, labels).sum(), (z,),
                  order=2, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_bradley_terry_loss_is_minus_log_sigmoid_of_difference():
  ra, rb = jnp.array([1.0, -0.5]), jnp.array([0.0, 0.5])
  got = losses.bradley_terry_loss(ra, rb, jnp.ones(2))
  want = -np.log(1 / (1 + np.exp(-(np.array([1.0, -0.5]) -
                                   np.array([0.0, 0.5])))))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # Label 0 is the same loss with the roles swapped.
  np.testing.assert_allclose(losses.bradley_terry_loss(ra, rb, jnp.zeros(2)),
                             losses.bradley_terry_loss(rb, ra, jnp.ones(2)),
                             rtol=1e-6)


def test_symmetrized_preference_formula_and_exact_antisymmetry():
  rng = np.random.default_rng(1)
  z_ab = jnp.asarray(rng.normal(scale=4.0, size=10_000), jnp.float32)
  z_ba = jnp.asarray(rng.normal(scale=4.0, size=10_000), jnp.float32)
  p_ab = losses.symmetrized_preference(z_ab, z_ba)
  p_ba = losses.symmetrized_preference(z_ba, z_ab)
  # Exactly 1 in float32, for every pair.
  assert np.all(np.asarray(p_ab + p_ba) == np.float32(1.0))
  sig = lambda z: 1 / (1 + np.exp(-np.asarray(z, np.float64)))
  want = 0.5 * (sig(z_ab) + 1 - sig(z_ba))
  np.testing.assert_allclose(p_ab, want, atol=1e-7)
  # Identical logits in both orders give exactly 1/2.
  assert np.all(np.asarray(losses.symmetrized_preference(z_ab, z_ab)) == 0.5)


def test_kl_estimators_on_categorical_closed_form():
  pi = np.array([0.5, 0.3, 0.2])
  mu = np.array([0.2, 0.2, 0.6])
  exact = float(np.sum(pi * np.log(pi / mu)))
  # Expectations under pi, taken exactly by weighting every outcome.
  est = losses.kl_estimators(jnp.log(pi), jnp.log(mu))
  np.testing.assert_allclose(float(jnp.sum(pi * est["k1"])), exact,
                             rtol=1e-5)
  np.testing.assert_allclose(float(jnp.sum(pi * est["k3"])), exact,
                             rtol=1e-5)
  l = np.log(pi / mu)
  np.testing.assert_allclose(est["k2"], 0.5 * l ** 2, rtol=1e-5)
  assert np.all(np.asarray(est["k3"]) >= 0)


def test_kl_divergence_from_logits_closed_form():
  lp = np.log(np.array([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]]))
  lq = np.log(np.array([[[0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]]]))
  kl_t = (np.exp(lp) * (lp - lq)).sum(-1)
  got = losses.kl_divergence_from_logits(lp, lq, jnp.array([[1.0, 1.0]]))
  np.testing.assert_allclose(got, [kl_t.sum()], rtol=1e-5)
  got = losses.kl_divergence_from_logits(lp, lq, jnp.array([[1.0, 0.0]]))
  np.testing.assert_allclose(got, [kl_t[0, 0]], rtol=1e-5)


def test_binary_accuracy_and_log_loss():
  probs = jnp.array([0.9, 0.2, 0.5, 0.6])
  labels = jnp.array([1, 1, 0, 0])
  np.testing.assert_allclose(losses.binary_accuracy(probs, labels),
                             [1.0, 0.0, 0.5, 0.0])
  np.testing.assert_allclose(
      losses.binary_log_loss(probs, labels),
      [-np.log(0.9), -np.log(0.2), -np.log(0.5), -np.log(0.4)], rtol=1e-5)


def test_expected_calibration_error_closed_form():
  # Bin [0.9, 0.95): two predictions of 0.9, one right: acc 0.5, conf 0.9.
  # Bin [0.6, 0.65): predictions 0.4 (label 0, right) and 0.6 (label 1,
  # right): acc 1, conf 0.6.
  probs = jnp.array([0.9, 0.9, 0.4, 0.6])
  labels = jnp.array([1, 0, 0, 1])
  got = float(losses.expected_calibration_error(probs, labels, num_bins=10))
  want = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_expected_calibration_error_is_small_for_calibrated_predictions():
  rng = np.random.default_rng(2)
  p = rng.uniform(size=200_000)
  labels = (rng.uniform(size=p.shape) < p).astype(np.int32)
  ece = float(losses.expected_calibration_error(p, labels))
  assert ece < 0.01
  # Overconfident predictions (p pushed to 0/1) are clearly miscalibrated.
  sharp = np.where(p > 0.5, 0.99, 0.01)
  assert float(losses.expected_calibration_error(sharp, labels)) > 0.2


def test_expected_calibration_error_ignores_zero_weight_rows():
  probs = jnp.array([0.9, 0.9, 0.1])
  labels = jnp.array([1, 1, 1])
  w = jnp.array([1.0, 1.0, 0.0])
  got = float(losses.expected_calibration_error(probs, labels, weights_b=w))
  np.testing.assert_allclose(got, 0.1, rtol=1e-5)
