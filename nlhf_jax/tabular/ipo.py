"""Exact expected Online IPO and IPO-MD updates for a softmax policy.

Online IPO and IPO-MD (Calandriello et al., ICML 2024) regress the log-ratio
difference of two sampled responses onto their preference. With the policy
pi_theta = softmax(theta) over n responses (per prompt for leading batch
axes), the sampling policy

  rho = pi_theta^(1-beta) mu^beta / Z      (held fixed: no gradient),

(beta = 0: Online IPO, both responses from pi_theta; beta > 0: IPO-MD, both
from the token-level geometric mixture), g = log pi_theta - log mu and
c(y, y') = (P(y > y') - 1/2) / tau, the expected loss is

  L(theta) = E_{y, y' ~ rho} (g(y) - g(y') - c(y, y'))^2.

Since d g(y) / d theta_k = [y = k] - pi_k (the pi_k terms cancel in the
difference) and c is antisymmetric (P(y > y') + P(y' > y) = 1),

  dL/dtheta_k = 4 rho_k (g_k - <rho, g> - ((P rho)_k - 1/2) / tau).

At a stationary point with rho > 0, g_k - (P rho)_k / tau is constant in k,
i.e. pi ∝ mu exp(P rho / tau): exactly the stationarity condition of
Nash-MD-PG at the same beta (`policy_gradient`, opponent rho). At beta = 0
that is the regularised Nash equilibrium pi*_tau; at beta > 0 it is
Nash-MD-PG's own fixed point (which is not pi*_tau in general).

EGPO (Zhou, Fazel and Du, 2025) takes extragradient steps on the same loss
with beta = 0: a predictor from theta with the sampler pi_theta, then the
corrector applied from theta with the gradient at the predictor (and its
sampler):

  theta_half = theta - lr dL/dtheta(theta),
  theta_next = theta - lr dL/dtheta(theta_half).

Its paper states last-iterate linear convergence to pi*_tau
(`egpo_extragradient`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import games
from nlhf_jax.tabular import policy_gradient
from nlhf_jax.tabular import simplex


def ipo_expected_loss(logits: np.ndarray, sampler: np.ndarray,
                      mu: np.ndarray, prefs: np.ndarray,
                      tau: float) -> np.ndarray:
  """L(theta) with both responses from the fixed `sampler`, shape (...)."""
  g = simplex.log_normalize(np.asarray(logits, np.float64)) - np.log(mu)
  c = (np.asarray(prefs, np.float64) - 0.5) / tau
  d = g[..., :, None] - g[..., None, :] - c
  return np.einsum("...a,...b,...ab->...", sampler, sampler, d * d)


def ipo_expected_gradient(logits: np.ndarray, mu: np.ndarray,
                          prefs: np.ndarray, beta: float,
                          tau: float) -> np.ndarray:
  """dL/dtheta of the expected IPO(-MD) loss (module docstring).

  Args:
    logits: theta, shape (..., n).
    mu: reference policy, shape (..., n), strictly positive.
    prefs: preference matrices, shape (..., n, n).
    beta: the sampler's mixture weight on mu in [0, 1] (0: Online IPO).
    tau: > 0.

  Returns:
    4 rho (g - <rho, g> - (P rho - 1/2) / tau), shape (..., n); it sums to 0
    over the last axis.
  """
  prefs = games.as_preference_matrix(prefs)
  mu = simplex.as_policy(mu, "mu", num_responses=prefs.shape[-1],
                         strictly_positive=True)
  if not tau > 0:
    raise ValueError(f"tau must be > 0; got {tau}")
  logits = np.asarray(logits, np.float64)
  rho = policy_gradient.mixture_opponent(logits, mu, beta)
  g = simplex.log_normalize(logits) - np.log(mu)
  inner = (g - np.sum(rho * g, axis=-1, keepdims=True)
           - (equilibrium.preference_against(prefs, rho) - 0.5) / tau)
  return 4.0 * rho * inner


def ipo_md_descent(prefs: np.ndarray, mu: np.ndarray, tau: float,
                   beta: float, learning_rate: float, num_steps: int,
                   init_logits: Optional[np.ndarray] = None) -> np.ndarray:
  """theta_{t+1} = theta_t - lr * dL/dtheta(theta_t), from log mu.

  Args:
    prefs: shape (..., n, n).
    mu: reference policy, shape (..., n), strictly positive.
    tau: > 0.
    beta: the sampler's mixture weight on mu (0: Online IPO).
    learning_rate: > 0.
    num_steps: T >= 0.
    init_logits: theta_0, shape (..., n); defaults to log mu.

  Returns:
    log-policies log pi_0..log pi_T, shape (T + 1, ..., n).
  """
  return policy_gradient.logit_path(
      prefs, mu, learning_rate, num_steps, init_logits,
      lambda logits, mu, prefs: logits - learning_rate *
      ipo_expected_gradient(logits, mu, prefs, beta, tau))


def egpo_extragradient(prefs: np.ndarray, mu: np.ndarray, tau: float,
                       learning_rate: float, num_steps: int,
                       init_logits: Optional[np.ndarray] = None
                       ) -> np.ndarray:
  """EGPO's extragradient on the Online IPO loss (module docstring).

  Args:
    prefs: shape (..., n, n).
    mu: reference policy, shape (..., n), strictly positive.
    tau: > 0.
    learning_rate: > 0.
    num_steps: T >= 0 (each one predictor and one corrector gradient).
    init_logits: theta_0, shape (..., n); defaults to log mu.

  Returns:
    log-policies log pi_0..log pi_T of the corrector iterates, shape
    (T + 1, ..., n).
  """
  def extragradient(logits, mu, prefs):
    half = logits - learning_rate * ipo_expected_gradient(
        logits, mu, prefs, 0.0, tau)
    return logits - learning_rate * ipo_expected_gradient(
        half, mu, prefs, 0.0, tau)

  return policy_gradient.logit_path(prefs, mu, learning_rate, num_steps,
                                    init_logits, extragradient)
