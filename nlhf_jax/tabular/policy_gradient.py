"""Exact expected Nash-MD-PG gradient for a softmax policy (paper §4.2, §4.4).

The policy is pi_theta = softmax(theta) over n responses (per prompt for
leading batch axes). Nash-MD-PG holds the opponent fixed at the normalised
geometric mixture pi' = pi_theta^(1-beta) mu^beta / Z (beta = 0: self-play,
beta = 1: best response to mu) and ascends

  P_tau(pi_theta > pi') = pi_theta^T P pi' - tau KL(pi_theta, mu) + const.

Its exact gradient with respect to the logits, for h = P pi' - tau log(pi/mu),
is grad = pi * (h - <pi, h>), which is also the expectation of the sample
estimator grad log pi(y) (P(y > y') - 1/2 - tau log(pi(y)/mu(y))) with
y ~ pi, y' ~ pi' (the 1/2 baseline has zero mean). This module is the
tabular ground truth for the model-based Nash-MD-PG step, with the same
exact softmax ascent for RLHF (h = r - tau log(pi/mu)) and Nash-EMA-PG
(opponent = softmax of the logits' EMA).
"""

from typing import Callable, Optional

import numpy as np

from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import games
from nlhf_jax.tabular import simplex


def _check_beta(beta: float) -> float:
  beta = float(beta)
  if not 0.0 <= beta <= 1.0:
    raise ValueError(f"beta (mixture weight on mu) must lie in [0, 1]; got "
                     f"{beta}")
  return beta


def mixture_opponent(logits: np.ndarray, mu: np.ndarray,
                     beta: float) -> np.ndarray:
  """The opponent pi' ∝ softmax(logits)^(1-beta) mu^beta, shape (..., n)."""
  beta = _check_beta(beta)
  log_pi = simplex.log_normalize(logits)
  return np.exp(
      simplex.geometric_mixture_logits(log_pi, simplex.safe_log(mu), beta))


def nash_md_pg_objective(logits: np.ndarray, opponent: np.ndarray,
                         mu: np.ndarray, prefs: np.ndarray,
                         tau: float) -> np.ndarray:
  """P_tau(softmax(logits) > opponent), shape (...)."""
  return equilibrium.regularized_preference(prefs, simplex.softmax(logits),
                                            opponent, mu, tau)


def nash_md_pg_expected_gradient(logits: np.ndarray, mu: np.ndarray,
                                 prefs: np.ndarray, beta: float,
                                 tau: float) -> np.ndarray:
  """Exact expected Nash-MD-PG gradient d P_tau(pi_theta > pi') / d theta.

  The opponent pi' = pi_theta^(1-beta) mu^beta / Z is held fixed (no
  gradient through it), as in the sampled estimator.

  Args:
    logits: theta, shape (..., n); pi_theta = softmax(theta).
    mu: reference policy, shape (..., n), strictly positive.
    prefs: preference matrices, shape (..., n, n).
    beta: mixture weight on mu in [0, 1].
    tau: regularisation strength >= 0.

  Returns:
    pi * (h - <pi, h>) with h = P pi' - tau log(pi / mu), shape (..., n).
    It sums to 0 over the last axis (softmax is shift-invariant).
  """
  prefs = games.as_preference_matrix(prefs)
  mu = simplex.as_policy(mu, "mu", num_responses=prefs.shape[-1],
                         strictly_positive=True)
  logits = np.asarray(logits, np.float64)
  if logits.shape[-1] != prefs.shape[-1] or not np.all(np.isfinite(logits)):
    raise ValueError(f"logits must be finite with {prefs.shape[-1]} entries "
                     f"on the last axis; got shape {logits.shape}")
  if tau < 0:
    raise ValueError(f"tau must be >= 0; got {tau}")
  log_pi = simplex.log_normalize(logits)
  pi = np.exp(log_pi)
  opponent = mixture_opponent(logits, mu, beta)
  h = equilibrium.preference_against(prefs, opponent) - tau * (
      log_pi - np.log(mu))
  return pi * (h - np.sum(pi * h, axis=-1, keepdims=True))


def nash_md_pg_ascent(prefs: np.ndarray,
                      mu: np.ndarray,
                      tau: float,
                      beta: float,
                      learning_rate: float,
                      num_steps: int,
                      init_logits: Optional[np.ndarray] = None) -> np.ndarray:
  """Gradient ascent on the logits with the exact expected Nash-MD-PG gradient.

  theta_{t+1} = theta_t + lr * grad(theta_t); beta = 0 is tabular self-play
  (opponent = current policy), beta = 1 converges to the best response to mu.
  The stationary points satisfy pi ∝ mu exp(P(y > pi')/tau) with
  pi' = pi^(1-beta) mu^beta / Z, so for beta = 0 the only interior one is
  pi*_tau.

  Args:
    prefs: shape (..., n, n).
    mu: reference policy, shape (..., n).
    tau: >= 0.
    beta: mixture weight on mu in [0, 1].
    learning_rate: > 0.
    num_steps: T >= 0.
    init_logits: theta_0, shape (..., n); defaults to log mu.

  Returns:
    log-policies log pi_0..log pi_T, shape (T + 1, ..., n).
  """
  return logit_path(
      prefs, mu, learning_rate, num_steps, init_logits,
      lambda logits, mu, prefs: logits + learning_rate *
      nash_md_pg_expected_gradient(logits, mu, prefs, beta, tau))


def logit_path(prefs: np.ndarray, mu: np.ndarray, learning_rate: float,
               num_steps: int, init_logits: Optional[np.ndarray],
               next_logits: Callable[[np.ndarray, np.ndarray, np.ndarray],
                                     np.ndarray]) -> np.ndarray:
  """log pi_0..log pi_T of theta_{t+1} = next_logits(theta_t, mu, prefs).

  Checks the inputs, starts from `init_logits` (default log mu) broadcast
  against mu and prefs, and passes the checked mu and prefs to
  `next_logits`. Shared by the exact tabular dynamics that iterate logits.

  Returns:
    shape (T + 1, ..., n).
  """
  if not learning_rate > 0 or num_steps < 0:
    raise ValueError(f"need learning_rate > 0 and num_steps >= 0; got "
                     f"{learning_rate} and {num_steps}")
  prefs = games.as_preference_matrix(prefs)
  mu = simplex.as_policy(mu, "mu", num_responses=prefs.shape[-1],
                         strictly_positive=True)
  logits = np.log(mu) if init_logits is None else np.asarray(
      init_logits, np.float64)
  logits = np.broadcast_to(
      logits, np.broadcast_shapes(logits.shape, mu.shape, prefs.shape[:-1]))
  out = np.empty((num_steps + 1,) + logits.shape)
  out[0] = simplex.log_normalize(logits)
  for t in range(num_steps):
    logits = next_logits(logits, mu, prefs)
    out[t + 1] = simplex.log_normalize(logits)
  return out


def _softmax_ascent(logits: np.ndarray, num_steps: int,
                    advantage, learning_rate: float) -> np.ndarray:
  """theta += lr * pi (h - <pi, h>) with h = advantage(t, log pi)."""
  out = np.empty((num_steps + 1,) + logits.shape)
  out[0] = simplex.log_normalize(logits)
  for t in range(num_steps):
    pi = np.exp(out[t])
    h = advantage(t, out[t])
    logits = logits + learning_rate * pi * (
        h - np.sum(pi * h, axis=-1, keepdims=True))
    out[t + 1] = simplex.log_normalize(logits)
  return out


def rlhf_pg_ascent(reward: np.ndarray, mu: np.ndarray, tau: float,
                   learning_rate: float, num_steps: int) -> np.ndarray:
  """Exact softmax policy gradient of E_pi r - tau KL(pi, mu), from log mu.

  Its only stationary point is mu exp(r / tau) / Z (tau > 0).

  Args:
    reward: r, shape (..., n).
    mu: reference policy, shape (..., n), strictly positive.
    tau: >= 0.
    learning_rate: > 0.
    num_steps: T >= 0.

  Returns:
    log-policies log pi_0..log pi_T, shape (T + 1, ..., n).
  """
  mu = simplex.as_policy(mu, "mu", strictly_positive=True)
  reward = np.asarray(reward, np.float64)
  log_mu = np.log(mu)
  return _softmax_ascent(
      np.broadcast_to(log_mu, np.broadcast_shapes(mu.shape, reward.shape)),
      num_steps, lambda t, log_pi: reward - tau * (log_pi - log_mu),
      learning_rate)


def nash_ema_pg_ascent(prefs: np.ndarray, mu: np.ndarray, tau: float,
                       decay: float, learning_rate: float,
                       num_steps: int) -> np.ndarray:
  """Tabular Nash-EMA-PG: the opponent is softmax of the logits' EMA.

  theta_{t+1} = theta_t + lr * grad P_tau(pi_theta > pi_ema) with
  ema_{t+1} = decay * ema_t + (1 - decay) * theta_{t+1}, from theta_0 =
  ema_0 = log mu (the deep step's EMA is over parameters; on a softmax
  table the parameters are the logits). Its interior fixed point is
  pi*_tau.

  Args:
    prefs: shape (..., n, n).
    mu: reference policy, shape (..., n), strictly positive.
    tau: >= 0.
    decay: in [0, 1).
    learning_rate: > 0.
    num_steps: T >= 0.

  Returns:
    log-policies log pi_0..log pi_T, shape (T + 1, ..., n).
  """
  prefs = games.as_preference_matrix(prefs)
  mu = simplex.as_policy(mu, "mu", num_responses=prefs.shape[-1],
                         strictly_positive=True)
  if not 0 <= decay < 1:
    raise ValueError(f"decay must lie in [0, 1); got {decay}")
  log_mu = np.broadcast_to(np.log(mu), prefs.shape[:-1])
  ema = [np.array(log_mu)]

  def advantage(t, log_pi):
    if t > 0:  # The EMA of the logits up to the current iterate.
      ema[0] = decay * ema[0] + (1 - decay) * log_pi
    opponent = simplex.softmax(ema[0])
    return (equilibrium.preference_against(prefs, opponent) -
            tau * (log_pi - log_mu))

  return _softmax_ascent(np.array(log_mu), num_steps, advantage,
                         learning_rate)
