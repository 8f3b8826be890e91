"""Exact tabular learning dynamics on preference games (paper §3).

Every algorithm is a pure function that returns the whole trajectory of
log-policies, shape (T + 1, ..., n): entry t is log pi_t, entry 0 the
initial policy. Leading axes after time are batch axes (prompts of a
contextual game), so one call runs the contextual version. Working in log
space keeps iterates exact even when probabilities fall below 1e-300.

- nash_md: pi_{t+1} ∝ pi_t^mu exp(eta_t P(y > pi_t^mu)), with the geometric
  mixture pi_t^mu ∝ pi_t^(1 - eta_t tau) mu^(eta_t tau) and, by default,
  eta_t = 2 / (tau (t + 2)) (Theorem 1: KL(pi*_tau, pi_T) <= 8/(tau^2 (T+1))).
- online_mirror_descent (§3.1): same KL centre pi_t^mu, but the preference is
  taken against the current pi_t: pi_{t+1} ∝ pi_t^mu exp(eta_t P(y > pi_t)).
- fictitious_play: pi_{t+1} = best response to the average of pi_0..pi_t.
- self_play: gradient ascent on softmax logits with the exact expected
  Nash-MD-PG gradient against the current policy (beta = 0).
- best_response_to_mu: the closed form mu exp(P(y > mu)/tau) / Z.
"""

from typing import Optional, Tuple, Union

import numpy as np
from scipy import linalg

from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import games
from nlhf_jax.tabular import policy_gradient
from nlhf_jax.tabular import simplex

StepSizes = Union[float, np.ndarray]


def _setup(prefs, mu, init, tau):
  """Validates inputs; returns (prefs, log_mu, log_pi0, tau), broadcast."""
  prefs = games.as_preference_matrix(prefs)
  n = prefs.shape[-1]
  tau = float(tau)
  if not np.isfinite(tau) or tau < 0:
    raise ValueError(f"tau must be finite and >= 0; got {tau}")
  if mu is None:
    if tau > 0:
      raise ValueError("mu (the reference policy) is required when tau > 0")
    mu = np.full(prefs.shape[:-1], 1.0 / n)
  mu = simplex.as_policy(mu, "mu", num_responses=n, strictly_positive=True)
  init = mu if init is None else simplex.as_policy(
      init, "init", num_responses=n, strictly_positive=True)
  batch = np.broadcast_shapes(prefs.shape[:-2], mu.shape[:-1],
                              init.shape[:-1])
  return (np.broadcast_to(prefs, batch + (n, n)),
          np.broadcast_to(simplex.log_normalize(np.log(mu)), batch + (n,)),
          np.broadcast_to(simplex.log_normalize(np.log(init)), batch + (n,)),
          tau)


def _step_array(step_sizes: StepSizes, num_steps: int, tau: float,
                name: str) -> np.ndarray:
  """Broadcasts step sizes to shape (num_steps,) and checks 0 < eta tau <= 1."""
  if num_steps < 0:
    raise ValueError(f"num_steps must be >= 0; got {num_steps}")
  etas = np.broadcast_to(np.asarray(step_sizes, np.float64), (num_steps,))
  if np.any(~np.isfinite(etas)) or np.any(etas <= 0):
    raise ValueError(f"{name} step sizes must be finite and > 0")
  if np.any(etas * tau > 1.0 + 1e-12):
    t = int(np.argmax(etas * tau > 1.0 + 1e-12))
    raise ValueError(f"{name} needs eta_t * tau <= 1 (mixture weight); step "
                     f"{t} has eta * tau = {etas[t] * tau:g}")
  return etas


def nash_md_step_sizes(tau: float, num_steps: int) -> np.ndarray:
  """Theorem 1's schedule eta_t = 2 / (tau (t + 2)), t = 0..T-1, shape (T,)."""
  if not tau > 0:
    raise ValueError(f"the Nash-MD schedule needs tau > 0; got {tau}")
  return 2.0 / (tau * (np.arange(num_steps) + 2.0))


def nash_md_bound(tau: float, iterations: np.ndarray) -> np.ndarray:
  """Theorem 1's bound 8 / (tau^2 (T + 1)) on KL(pi*_tau, pi_T)."""
  return 8.0 / (tau**2 * (np.asarray(iterations, np.float64) + 1.0))


def nash_md_step(prefs: np.ndarray, log_pi: np.ndarray, log_mu: np.ndarray,
                 tau: float, eta: float) -> np.ndarray:
  """One Nash-MD step in log space (paper Eq. 5).

  log pi_{t+1} = log pi_t^mu + eta P(y > pi_t^mu) + c, with
  log pi_t^mu = (1 - eta tau) log pi_t + eta tau log mu + c'.

  Args:
    prefs: shape (..., n, n).
    log_pi: log pi_t, shape (..., n).
    log_mu: log mu, shape (..., n).
    tau: regularisation strength.
    eta: step size with eta * tau in [0, 1].

  Returns:
    log pi_{t+1}, shape (..., n).
  """
  log_mix = simplex.geometric_mixture_logits(log_pi, log_mu, eta * tau)
  return simplex.log_normalize(
      log_mix + eta * equilibrium.preference_against(prefs, np.exp(log_mix)))


def nash_md(prefs: np.ndarray,
            mu: np.ndarray,
            tau: float,
            num_steps: int,
            init: Optional[np.ndarray] = None,
            step_sizes: Optional[StepSizes] = None) -> np.ndarray:
  """Runs Nash-MD for num_steps steps.

  Args:
    prefs: preference matrices, shape (..., n, n).
    mu: reference policy, shape (..., n), strictly positive.
    tau: regularisation strength > 0.
    num_steps: T >= 0.
    init: pi_0, shape (..., n), strictly positive; defaults to mu.
    step_sizes: eta_t, scalar or shape (T,); defaults to 2 / (tau (t + 2)).

  Returns:
    log-policies log pi_0..log pi_T, shape (T + 1, ..., n).
  """
  prefs, log_mu, log_pi, tau = _setup(prefs, mu, init, tau)
  if tau == 0:
    raise ValueError("Nash-MD needs tau > 0 (it targets the regularised "
                     "equilibrium); use online_mirror_descent for tau = 0")
  if step_sizes is None:
    step_sizes = nash_md_step_sizes(tau, num_steps)
  etas = _step_array(step_sizes, num_steps, tau, "Nash-MD")
  out = np.empty((num_steps + 1,) + log_pi.shape)
  out[0] = log_pi
  for t, eta in enumerate(etas):
    out[t + 1] = nash_md_step(prefs, out[t], log_mu, tau, eta)
  return out


def online_mirror_descent_step(prefs: np.ndarray, log_pi: np.ndarray,
                               log_mu: np.ndarray, tau: float,
                               eta: float) -> np.ndarray:
  """One OMD step: log pi_{t+1} = log pi_t^mu + eta P(y > pi_t) + c.

  The exact maximiser of eta P(pi > pi_t) - KL(pi, pi_t^mu) (paper §3.1,
  Eqs. 7-8): same KL centre as Nash-MD, preference against the current pi_t.
  With tau = 0 this is the multiplicative-weights (Hedge) update.

  Args:
    prefs: shape (..., n, n).
    log_pi: log pi_t, shape (..., n).
    log_mu: log mu, shape (..., n).
    tau: regularisation strength >= 0.
    eta: step size with eta * tau in [0, 1].

  Returns:
    log pi_{t+1}, shape (..., n).
  """
  log_mix = simplex.geometric_mixture_logits(log_pi, log_mu, eta * tau)
  return simplex.log_normalize(
      log_mix + eta * equilibrium.preference_against(prefs, np.exp(log_pi)))


def online_mirror_descent(prefs: np.ndarray,
                          num_steps: int,
                          step_sizes: StepSizes,
                          mu: Optional[np.ndarray] = None,
                          tau: float = 0.0,
                          init: Optional[np.ndarray] = None) -> np.ndarray:
  """Runs online mirror descent (self-play no-regret dynamics).

  Args:
    prefs: preference matrices, shape (..., n, n).
    num_steps: T >= 0.
    step_sizes: eta_t, scalar or shape (T,).
    mu: reference policy, shape (..., n); required if tau > 0, defaults to
      uniform otherwise.
    tau: regularisation strength >= 0 (0: unregularised game).
    init: pi_0, strictly positive; defaults to mu.

  Returns:
    log-policies log pi_0..log pi_T, shape (T + 1, ..., n). Use
    running_average_logs for the average iterate.
  """
  prefs, log_mu, log_pi, tau = _setup(prefs, mu, init, tau)
  etas = _step_array(step_sizes, num_steps, tau, "OMD")
  out = np.empty((num_steps + 1,) + log_pi.shape)
  out[0] = log_pi
  for t, eta in enumerate(etas):
    out[t + 1] = online_mirror_descent_step(prefs, out[t], log_mu, tau, eta)
  return out


def omd_linear_rate(prefs: np.ndarray, policy: np.ndarray, tau: float,
                    eta: float) -> float:
  """Spectral radius of the OMD map linearised at a fixed point `policy`.

  In logits z, OMD is z -> (1 - eta tau) z + eta tau log mu + eta P softmax(z)
  (mod constants); its Jacobian is M = (1 - eta tau) I + eta P J with
  J = diag(pi) - pi pi^T. On the tangent space (logits mod constants) the
  eigenvalues of M decide local behaviour: radius < 1 means the last iterate
  converges linearly near pi*_tau at that rate; radius > 1 means pi*_tau is
  unstable and the last iterate does not converge to it (it cycles or
  drifts). For tau = 0 and an interior equilibrium the radius is > 1 for
  every eta > 0 (multiplicative weights spirals outwards).

  Args:
    prefs: one preference matrix, shape (n, n).
    policy: the fixed point (pi*_tau, or a Nash equilibrium for tau = 0),
      shape (n,).
    tau: regularisation strength >= 0.
    eta: OMD step size.

  Returns:
    The spectral radius (float).
  """
  prefs = games.as_preference_matrix(prefs)
  pi = simplex.as_policy(policy, "policy", num_responses=prefs.shape[-1])
  if prefs.ndim != 2 or pi.ndim != 1:
    raise ValueError("omd_linear_rate takes one (n, n) matrix and one (n,) "
                     f"policy; got {prefs.shape} and {pi.shape}")
  n = pi.shape[0]
  jac = (1.0 - eta * tau) * np.eye(n) + eta * prefs @ (
      np.diag(pi) - np.outer(pi, pi))
  tangent = linalg.null_space(np.ones((1, n)))  # Orthonormal basis of 1^perp.
  return float(np.abs(np.linalg.eigvals(tangent.T @ jac @ tangent)).max())


def running_average_logs(log_policies: np.ndarray) -> np.ndarray:
  """log of the running average (1/(t+1)) sum_{s<=t} pi_s along axis 0.

  Args:
    log_policies: shape (T + 1, ..., n).

  Returns:
    log pi-bar_0..log pi-bar_T, shape (T + 1, ..., n).
  """
  log_policies = np.asarray(log_policies, np.float64)
  counts = np.arange(1, log_policies.shape[0] + 1, dtype=np.float64)
  counts = counts.reshape((-1,) + (1,) * (log_policies.ndim - 1))
  return np.logaddexp.accumulate(log_policies, axis=0) - np.log(counts)


def _pure_best_response_logs(prefs, log_opponent):
  """log of the pure best response argmax_y P(y > opponent) (lowest index)."""
  against = equilibrium.preference_against(prefs, np.exp(log_opponent))
  n = against.shape[-1]
  return simplex.safe_log(np.eye(n)[np.argmax(against, axis=-1)])


def fictitious_play(prefs: np.ndarray,
                    num_steps: int,
                    mu: Optional[np.ndarray] = None,
                    tau: float = 0.0,
                    init: Optional[np.ndarray] = None
                    ) -> Tuple[np.ndarray, np.ndarray]:
  """Runs fictitious play: best response to the average of past policies.

  pi_{t+1} = BR(pi-bar_t) with pi-bar_t = (1/(t+1)) sum_{s<=t} pi_s. For
  tau > 0, BR is the regularised (Gibbs) best response mu exp(P pi-bar/tau)/Z
  and pi-bar_t converges to pi*_tau; for tau = 0 it is a pure best response
  (lowest index on ties) and pi-bar_t converges to the Nash set (Robinson).

  Args:
    prefs: preference matrices, shape (..., n, n).
    num_steps: T >= 0.
    mu: reference policy; required if tau > 0, defaults to uniform otherwise.
    tau: regularisation strength >= 0.
    init: pi_0, strictly positive; defaults to mu.

  Returns:
    (responses, averages): log pi_0..log pi_T and log pi-bar_0..log pi-bar_T,
    each of shape (T + 1, ..., n); pure responses have -inf entries.
  """
  prefs, log_mu, log_pi, tau = _setup(prefs, mu, init, tau)
  if num_steps < 0:
    raise ValueError(f"num_steps must be >= 0; got {num_steps}")
  responses = np.empty((num_steps + 1,) + log_pi.shape)
  averages = np.empty_like(responses)
  responses[0] = averages[0] = log_pi
  for t in range(num_steps):
    if tau > 0:
      responses[t + 1] = equilibrium.regularized_best_response_logits(
          prefs, np.exp(averages[t]), np.exp(log_mu), tau)
    else:
      responses[t + 1] = _pure_best_response_logs(prefs, averages[t])
    averages[t + 1] = np.logaddexp(
        averages[t] + np.log((t + 1) / (t + 2)),
        responses[t + 1] - np.log(t + 2))
  return responses, averages


def self_play(prefs: np.ndarray, mu: np.ndarray, tau: float,
              learning_rate: float, num_steps: int) -> np.ndarray:
  """Tabular self-play: Nash-MD-PG with beta = 0 (opponent = current policy).

  theta_{t+1} = theta_t + lr * grad_theta P_tau(pi_theta > pi_theta_t), from
  theta_0 = log mu; its only interior stationary point is pi*_tau. (With a
  mirror/natural-gradient step instead, this is online_mirror_descent.)

  Args:
    prefs: shape (..., n, n).
    mu: reference policy, shape (..., n).
    tau: >= 0.
    learning_rate: > 0.
    num_steps: T >= 0.

  Returns:
    log-policies log pi_0..log pi_T, shape (T + 1, ..., n).
  """
  return policy_gradient.nash_md_pg_ascent(prefs, mu, tau, 0.0, learning_rate,
                                           num_steps)


def best_response_to_mu(prefs: np.ndarray, mu: np.ndarray,
                        tau: float) -> np.ndarray:
  """argmax_pi P_tau(pi > mu) = mu exp(P(y > mu)/tau) / Z, shape (..., n)."""
  prefs = games.as_preference_matrix(prefs)
  mu = simplex.as_policy(mu, "mu", num_responses=prefs.shape[-1],
                         strictly_positive=True)
  return equilibrium.regularized_best_response(prefs, mu, mu, tau)


def kl_to_target(target: np.ndarray, log_policies: np.ndarray) -> np.ndarray:
  """KL(target, pi_t) for every iterate.

  Args:
    target: e.g. pi*_tau, shape (..., n).
    log_policies: shape (T + 1, ..., n).

  Returns:
    KL divergences, shape (T + 1, ...); +inf where pi_t misses target's
    support.
  """
  return simplex.kl_from_logs(simplex.safe_log(target)[None], log_policies)
