"""Policy-gradient pieces shared by the online algorithms (pure array functions).

Nash-MD-PG, Nash-EMA-PG, self-play, best response and the RLHF baseline all
update π_θ with REINFORCE on sampled responses y; they differ only in the
terminal signal (a preference probability or a reward) and in who the
opponent is. The functions here take per-token log-probabilities of the
sampled tokens and return per-token advantages and the surrogate loss whose
gradient is the estimator.

Shapes: b = batch, t = response length. `mask_bt` is 1 on real tokens of y
(including EOS) and 0 on padding.

References:
  Munos et al., Nash Learning from Human Feedback, ICML 2024, §7 / App. F.2
  (model-based estimator, per-token KL with reward-to-go).
  Calandriello et al., Human Alignment of LLMs through Online Preference
  Optimisation, ICML 2024 (Online IPO).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

Array = jax.Array


def kl_to_go(logp_policy_bt: ArrayLike, logp_ref_bt: ArrayLike,
             mask_bt: ArrayLike) -> Array:
  """Reward-to-go of the per-token KL estimate.

  K_n = Σ_{m ≥ n} mask_m · (log π(y_m | x, y_<m) − log μ(y_m | x, y_<m)).

  Args:
    logp_policy_bt: log π_θ of the sampled tokens [b, t].
    logp_ref_bt: log μ of the same tokens [b, t].
    mask_bt: 1 on response tokens, 0 on padding [b, t].

  Returns:
    K [b, t] (0 on padding).
  """
  mask = jnp.asarray(mask_bt, jnp.float32)
  log_ratio = (jnp.asarray(logp_policy_bt, jnp.float32) -
               jnp.asarray(logp_ref_bt, jnp.float32)) * mask
  to_go = jnp.flip(jnp.cumsum(jnp.flip(log_ratio, -1), -1), -1)
  return to_go * mask


def regularised_advantages(signal_b: ArrayLike, logp_policy_bt: ArrayLike,
                           logp_ref_bt: ArrayLike, mask_bt: ArrayLike,
                           tau: float) -> Array:
  """Per-token advantage A_n = s − τ · Σ_{m≥n} log(π(y_m)/μ(y_m)).

  With s = P(y ≻ y' | x) − ½ this is Nash-MD-PG's advantage; with
  s = r(x, y) − baseline it is the KL-regularised RLHF advantage. The result
  is a constant for the gradient: callers must not differentiate through it.

  Args:
    signal_b: terminal signal per sequence [b].
    logp_policy_bt: log π_θ of the sampled tokens [b, t].
    logp_ref_bt: log μ of the sampled tokens [b, t].
    mask_bt: response mask [b, t].
    tau: KL coefficient τ ≥ 0.

  Returns:
    A [b, t], 0 on padding, with stop_gradient applied.
  """
  mask = jnp.asarray(mask_bt, jnp.float32)
  signal = jnp.asarray(signal_b, jnp.float32)[:, None]
  adv = (signal - tau * kl_to_go(logp_policy_bt, logp_ref_bt, mask)) * mask
  return jax.lax.stop_gradient(adv)


def anchored_advantages(signal_b: ArrayLike, logp_policy_bt: ArrayLike,
                        logp_ref_bt: ArrayLike, logp_anchor_bt: ArrayLike,
                        mask_bt: ArrayLike, tau: float,
                        anchor_weight: float) -> Array:
  """A_n = s − τ Σ_{m≥n} log(π/μ)(y_m) − λ Σ_{m≥n} log(π/a)(y_m).

  The per-token advantage of the proximal objective
  P(π ≻ π') − τ KL(π, μ) − λ KL(π, a): Nash Prox's, with a = π_k (its
  previous iterate, also the opponent) and λ = 1/η. λ = 0 is
  `regularised_advantages`. Constant for the gradient (stop_gradient).

  Args:
    signal_b: terminal signal per sequence [b] (e.g. P(y ≻ y') − ½).
    logp_policy_bt: log π_θ of the sampled tokens [b, t].
    logp_ref_bt: log μ of the sampled tokens [b, t].
    logp_anchor_bt: log a of the sampled tokens [b, t].
    mask_bt: response mask [b, t].
    tau: KL weight τ ≥ 0 towards μ.
    anchor_weight: KL weight λ ≥ 0 towards the anchor a.

  Returns:
    A [b, t], 0 on padding, with stop_gradient applied.
  """
  adv = (regularised_advantages(signal_b, logp_policy_bt, logp_ref_bt,
                                mask_bt, tau) -
         anchor_weight * kl_to_go(logp_policy_bt, logp_anchor_bt, mask_bt))
  return jax.lax.stop_gradient(adv)


def reinforce_loss(logp_policy_bt: ArrayLike, advantages_bt: ArrayLike,
                   mask_bt: ArrayLike) -> Array:
  """Surrogate loss L = −mean_b Σ_n A_n · log π_θ(y_n | x, y_<n).

  ∇L is the REINFORCE estimate of −∇_θ E[return]; `advantages_bt` must be
  constants (see `regularised_advantages`).

  Args:
    logp_policy_bt: log π_θ of the sampled tokens, differentiable [b, t].
    advantages_bt: per-token advantages [b, t].
    mask_bt: response mask [b, t].

  Returns:
    Scalar loss.
  """
  mask = jnp.asarray(mask_bt, jnp.float32)
  per_seq = jnp.sum(jax.lax.stop_gradient(advantages_bt) * logp_policy_bt *
                    mask, axis=-1)
  return -jnp.mean(per_seq)


def nash_md_signal(preference_b: ArrayLike) -> Array:
  """Nash-MD-PG terminal signal P(y ≻ y' | x) − ½ [b]."""
  return jnp.asarray(preference_b, jnp.float32) - 0.5


def online_ipo_loss(logp_policy_y_b: ArrayLike, logp_ref_y_b: ArrayLike,
                    logp_policy_y2_b: ArrayLike, logp_ref_y2_b: ArrayLike,
                    preference_b: ArrayLike, tau: float) -> Array:
  """Online IPO loss with soft preference labels.

  With h = log(π(y)/μ(y)) − log(π(y')/μ(y')) (sequence log-probs) and
  p = P(y ≻ y' | x), the expected IPO loss over a label drawn from p is,
  up to a constant, (h − (p − ½)/τ)²; its minimiser in h is (p − ½)/τ.

  Args:
    logp_policy_y_b, logp_ref_y_b: sequence log-probs of y [b].
    logp_policy_y2_b, logp_ref_y2_b: sequence log-probs of y' [b].
    preference_b: P(y ≻ y' | x) [b], treated as a constant.
    tau: regularisation τ > 0.

  Returns:
    Scalar mean loss.
  """
  h = ((logp_policy_y_b - logp_ref_y_b) -
       (logp_policy_y2_b - logp_ref_y2_b))
  target = jax.lax.stop_gradient(nash_md_signal(preference_b)) / tau
  return jnp.mean(jnp.square(h - target))
