"""Pure array losses and metrics for supervised, preference and reward training.

Every function here takes arrays and returns arrays: no model calls, no
parameters, masks passed explicitly. Shapes use suffixes (`_b` batch, `_bt`
batch x time, `_btv` batch x time x vocabulary). Per-example outputs are
returned where a caller may want to weight or mask them; reductions to a
scalar are left to the algorithm.

References: Munos et al., "Nash Learning from Human Feedback" (ICML 2024),
App. G.1 (preference model trained with cross-entropy on human labels,
reward model with the Bradley-Terry loss); Schulman, "Approximating KL
divergence" (2020) for the k1/k2/k3 estimators; Guo et al., "On Calibration
of Modern Neural Networks" (2017) for the expected calibration error.
The policy-gradient losses of Nash-MD-PG / Nash-EMA-PG live in their own
algorithm modules.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

Array = jax.Array

# Symmetrised probabilities are rounded to this grid so that 0.5 + d and
# 0.5 - d are exact float32 numbers (see `symmetrized_preference`).
_SYMMETRY_GRID = 2.0 ** 24


def token_logprobs(logits_btv: ArrayLike, tokens_bt: ArrayLike) -> Array:
  """Log-probability of each given token: log softmax(logits)[b, t, tokens].

  The gradient is written out (`_picked_log_softmax`): d/dlogits =
  g · (onehot(tokens) - softmax(logits)), one fused pass over [b, t, v]
  instead of the scatter that differentiating the gather would emit.

  Args:
    logits_btv: unnormalised logits [b, t, v] (any float dtype; computed in
      float32).
    tokens_bt: integer token ids [b, t] in [0, v).

  Returns:
    float32 [b, t]: log p(tokens[b, t] | context) under softmax(logits[b, t]).
  """
  logits = jnp.asarray(logits_btv, jnp.float32)
  return _picked_log_softmax(logits, jnp.asarray(tokens_bt, jnp.int32))


@jax.custom_vjp
def _picked_log_softmax(logits_btv: Array, tokens_bt: Array) -> Array:
  """logits[b, t, tokens] - logsumexp(logits[b, t]) (float32 [b, t])."""
  return _picked_log_softmax_fwd(logits_btv, tokens_bt)[0]


def _picked_log_softmax_fwd(logits_btv, tokens_bt):
  peak = jnp.max(logits_btv, axis=-1, keepdims=True)
  lse_bt = (peak + jnp.log(jnp.sum(jnp.exp(logits_btv - peak), axis=-1,
                                   keepdims=True)))[..., 0]
  picked_bt = jnp.take_along_axis(logits_btv, tokens_bt[..., None],
                                  axis=-1)[..., 0]
  return picked_bt - lse_bt, (logits_btv, lse_bt, tokens_bt)


def _picked_log_softmax_bwd(residuals, g_bt):
  logits_btv, lse_bt, tokens_bt = residuals
  vocab = jax.lax.broadcasted_iota(jnp.int32, logits_btv.shape,
                                   logits_btv.ndim - 1)
  onehot_btv = (vocab == tokens_bt[..., None]).astype(logits_btv.dtype)
  softmax_btv = jnp.exp(logits_btv - lse_bt[..., None])
  return (onehot_btv - softmax_btv) * g_bt[..., None], None


_picked_log_softmax.defvjp(_picked_log_softmax_fwd, _picked_log_softmax_bwd)


def sequence_logprobs(logits_btv: ArrayLike, tokens_bt: ArrayLike,
                      mask_bt: ArrayLike) -> Array:
  """Log-probability of whole sequences: sum_t mask[b,t] log p(tokens[b,t]).

  Args:
    logits_btv: logits [b, t, v] whose position t predicts `tokens_bt[:, t]`
      (teacher forcing with decoder inputs shifted right).
    tokens_bt: integer tokens [b, t].
    mask_bt: [b, t] weights, 1 on real tokens (EOS included), 0 on padding.

  Returns:
    float32 [b]: log pi(y_b | x_b) = sum_t mask * log p(y_t | x, y_<t).
  """
  mask = jnp.asarray(mask_bt, jnp.float32)
  return jnp.sum(token_logprobs(logits_btv, tokens_bt) * mask, axis=-1)


def token_is_top1(logits_btv: ArrayLike, targets_bt: ArrayLike) -> Array:
  """1.0 where the target has the largest logit (token accuracy), else 0.

  Compares the target's logit with the maximum instead of taking the
  argmax: the same result unless two logits tie (a tie counts as a hit),
  and a max reduction costs a fraction of XLA:CPU's (value, index) argmax
  reduction over the vocabulary.

  Args:
    logits_btv: logits [b, t, v].
    targets_bt: integer targets [b, t] in [0, v).

  Returns:
    float32 [b, t].
  """
  logits = jnp.asarray(logits_btv, jnp.float32)
  target_bt = jnp.take_along_axis(
      logits, jnp.asarray(targets_bt, jnp.int32)[..., None], axis=-1)[..., 0]
  return (target_bt >= jnp.max(logits, axis=-1)).astype(jnp.float32)


def token_cross_entropy(logits_btv: ArrayLike, targets_bt: ArrayLike,
                        weights_bt: ArrayLike) -> Array:
  """Weighted token cross-entropy for teacher-forced supervised training.

  Args:
    logits_btv: logits [b, t, v].
    targets_bt: integer targets [b, t].
    weights_bt: [b, t] loss weights (1 on target tokens, 0 on padding).

  Returns:
    float32 [b, t]: -weights * log softmax(logits)[targets]. The SFT loss is
    the sum of this array divided by the sum of the weights.
  """
  weights = jnp.asarray(weights_bt, jnp.float32)
  return -token_logprobs(logits_btv, targets_bt) * weights


def preference_bce(logits_b: ArrayLike, labels_b: ArrayLike) -> Array:
  """Binary cross-entropy of P(y ≻ y') = σ(z) against (soft) labels.

  loss = -[l log σ(z) + (1 - l) log σ(-z)] = softplus(z) - l z, computed in
  the numerically stable softplus form.

  Args:
    logits_b: preference logits z [b] (P(y ≻ y' | x) = σ(z)).
    labels_b: [b] in [0, 1]: 1 when y was preferred, 0 when y' was;
      fractional values are soft labels.

  Returns:
    float32 [b] per-example losses.
  """
  z = jnp.asarray(logits_b, jnp.float32)
  labels = jnp.asarray(labels_b, jnp.float32)
  return jax.nn.softplus(z) - labels * z


def bradley_terry_loss(rewards_a_b: ArrayLike, rewards_b_b: ArrayLike,
                       labels_b: ArrayLike) -> Array:
  """Bradley-Terry loss of a scalar reward model.

  P_BT(a ≻ b | x) = σ(r(x, a) - r(x, b)); loss = BCE of that probability
  against the label (NLHF App. G.1). With label 1 this is
  -log σ(r_a - r_b), the usual chosen/rejected form.

  Args:
    rewards_a_b: r(x, a) [b].
    rewards_b_b: r(x, b) [b].
    labels_b: [b] in [0, 1], 1 when a was preferred.

  Returns:
    float32 [b] per-example losses.
  """
  diff = (jnp.asarray(rewards_a_b, jnp.float32) -
          jnp.asarray(rewards_b_b, jnp.float32))
  return preference_bce(diff, labels_b)


def symmetrized_preference(logits_ab_b: ArrayLike,
                           logits_ba_b: ArrayLike) -> Array:
  """Order-symmetrised preference probability of a pairwise model.

  P(a ≻ b) = ½ (σ(z_ab) + 1 - σ(z_ba)) = ½ + d with d = ½ (σ(z_ab) - σ(z_ba)),
  where z_ab is the model's logit with a presented first. Swapping a and b
  negates d exactly, and d is rounded to a multiple of 2^-24, so
  P(a ≻ b) + P(b ≻ a) == 1 holds exactly in float32 (both 0.5 ± d are then
  representable). The rounding changes P by at most 3e-8.

  Args:
    logits_ab_b: logits [b] of "first ≻ second" with a first.
    logits_ba_b: logits [b] with b first.

  Returns:
    float32 [b] in [0, 1].
  """
  return order_averaged_probability(
      jax.nn.sigmoid(jnp.asarray(logits_ab_b, jnp.float32)),
      jax.nn.sigmoid(jnp.asarray(logits_ba_b, jnp.float32)))


def order_averaged_probability(p_ab_b: ArrayLike, p_ba_b: ArrayLike) -> Array:
  """P(a ≻ b) = ½ (p_ab + 1 − p_ba) of a judge queried in both orders.

  Computed as ½ + d with d = ½ (p_ab − p_ba) rounded to a multiple of 2^-24,
  so swapping a and b gives exactly 1 − P (see `symmetrized_preference`)
  and a judge with p_ab = p_ba (e.g. one that always prefers the first
  slot) gives exactly ½.

  Args:
    p_ab_b: P(first ≻ second) [b] with a presented first, in [0, 1].
    p_ba_b: the same with b presented first.

  Returns:
    float32 [b] in [0, 1].
  """
  d = 0.5 * (jnp.asarray(p_ab_b, jnp.float32) -
             jnp.asarray(p_ba_b, jnp.float32))
  d = jnp.round(d * _SYMMETRY_GRID) / _SYMMETRY_GRID
  return 0.5 + d


def kl_estimators(logp_policy: ArrayLike,
                  logp_reference: ArrayLike) -> dict[str, Array]:
  """Monte-Carlo estimators of KL(π ‖ μ) from samples y ~ π.

  With log-ratio l = log π(y) - log μ(y) and r = μ(y)/π(y) = exp(-l):
    k1 = l                (unbiased, high variance, can be negative);
    k2 = ½ l²             (biased, low variance, >= 0);
    k3 = (r - 1) + l      (unbiased, >= 0; Schulman 2020).

  Args:
    logp_policy: log π of the samples, any shape (per token or per sequence).
    logp_reference: log μ of the same samples, same shape.

  Returns:
    {'k1', 'k2', 'k3'}: float32 arrays of the input shape; their means
    estimate KL(π ‖ μ).
  """
  log_ratio = (jnp.asarray(logp_policy, jnp.float32) -
               jnp.asarray(logp_reference, jnp.float32))
  return {
      "k1": log_ratio,
      "k2": 0.5 * jnp.square(log_ratio),
      "k3": jnp.expm1(-log_ratio) + log_ratio,
  }


def kl_divergence_from_logits(logits_p_btv: ArrayLike,
                              logits_q_btv: ArrayLike,
                              mask_bt: ArrayLike) -> Array:
  """Exact per-token KL(p ‖ q) summed over a sequence.

  KL_b = sum_t mask[b,t] sum_v p[b,t,v] (log p[b,t,v] - log q[b,t,v]), with
  p = softmax(logits_p), q = softmax(logits_q).

  Args:
    logits_p_btv: logits of p [b, t, v].
    logits_q_btv: logits of q [b, t, v].
    mask_bt: [b, t] weights.

  Returns:
    float32 [b]: the (masked) sum over positions of the token-level KL.
  """
  logp = jax.nn.log_softmax(jnp.asarray(logits_p_btv, jnp.float32), axis=-1)
  logq = jax.nn.log_softmax(jnp.asarray(logits_q_btv, jnp.float32), axis=-1)
  kl_bt = jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)
  return jnp.sum(kl_bt * jnp.asarray(mask_bt, jnp.float32), axis=-1)


def binary_accuracy(probs_b: ArrayLike, labels_b: ArrayLike) -> Array:
  """Per-example accuracy of probabilistic binary predictions.

  Args:
    probs_b: predicted P(label = 1) [b].
    labels_b: {0, 1} labels [b].

  Returns:
    float32 [b]: 1 if the prediction is on the label's side of ½, 0 if on the
    other side, ½ when the prediction is exactly ½ (a tie counts as a coin
    flip).
  """
  probs = jnp.asarray(probs_b, jnp.float32)
  labels = jnp.asarray(labels_b, jnp.float32)
  signed = (probs - 0.5) * (2.0 * labels - 1.0)
  return jnp.where(signed > 0, 1.0, jnp.where(signed < 0, 0.0, 0.5))


def binary_log_loss(probs_b: ArrayLike, labels_b: ArrayLike,
                    eps: float = 1e-7) -> Array:
  """Per-example log-loss -[l log p + (1-l) log(1-p)], p clipped to [eps, 1-eps].

  Args:
    probs_b: predicted P(label = 1) [b].
    labels_b: labels [b] in [0, 1].
    eps: clipping that keeps the loss finite for p in {0, 1}.

  Returns:
    float32 [b].
  """
  p = jnp.clip(jnp.asarray(probs_b, jnp.float32), eps, 1.0 - eps)
  labels = jnp.asarray(labels_b, jnp.float32)
  return -(labels * jnp.log(p) + (1.0 - labels) * jnp.log1p(-p))


def expected_calibration_error(probs_b: ArrayLike, labels_b: ArrayLike,
                               num_bins: int = 10,
                               weights_b: ArrayLike | None = None) -> Array:
  """Top-label expected calibration error of binary predictions.

  Each prediction p has confidence c = max(p, 1 - p) ∈ [½, 1] and predicts
  the label 1[p > ½] (ties count as correct with weight ½, as in
  `binary_accuracy`). Confidences are put in `num_bins` equal-width bins
  over [½, 1] (the last bin includes 1) and

    ECE = sum_k (n_k / n) |acc_k - conf_k|,

  with acc_k, conf_k the mean accuracy and confidence in bin k.

  Args:
    probs_b: predicted P(label = 1) [b].
    labels_b: {0, 1} labels [b].
    num_bins: number of bins (static).
    weights_b: optional [b] example weights (e.g. 0 for padding rows).

  Returns:
    float32 scalar in [0, ½].
  """
  probs = jnp.asarray(probs_b, jnp.float32)
  weights = (jnp.ones_like(probs) if weights_b is None else
             jnp.asarray(weights_b, jnp.float32))
  conf = jnp.maximum(probs, 1.0 - probs)
  correct = binary_accuracy(probs, labels_b)
  bins = jnp.clip(jnp.floor((conf - 0.5) * 2.0 * num_bins).astype(jnp.int32),
                  0, num_bins - 1)
  count_k = jax.ops.segment_sum(weights, bins, num_segments=num_bins)
  conf_k = jax.ops.segment_sum(weights * conf, bins, num_segments=num_bins)
  acc_k = jax.ops.segment_sum(weights * correct, bins, num_segments=num_bins)
  total = jnp.maximum(jnp.sum(weights), 1e-12)
  return jnp.sum(jnp.abs(acc_k - conf_k)) / total
