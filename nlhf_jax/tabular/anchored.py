"""Exact tabular forms of the deep Nash Prox and MPO steps (policy gradient).

The deep steps (`algorithms/nash_prox.py`, `algorithms/mpo.py`) do not
solve a proximal step in closed form (`tabular.prox`): they ascend, by
policy gradient on a softmax policy pi_theta, the *anchored* objective

  J(theta) = P(pi_theta > opponent) - tau KL(pi_theta, mu)
             - lam KL(pi_theta, a)

with the opponent and the anchor a held fixed, and refresh them to the
current policy on a schedule:

  Nash Prox   opponent = a = pi_k (the previous iterate), lam = 1/eta;
              a <- pi_theta after every `inner_steps` steps, so a block of
              inner steps approximates one exact Nash Prox step
              (`prox.nash_prox`).
  MPO         opponent = pi_theta itself (self-play), tau = 0 towards mu and
              weight tau towards the magnet a (lam = tau), a <- pi_theta
              after every `refresh_every` steps. The proximal term towards
              pi_t of MPO's update has zero gradient at pi_theta = pi_t: in
              the gradient form the step size plays 1/eta.

The exact gradient on a softmax table is `anchored_gradient`; it is the
expectation of the deep steps' estimator (`policy_gradient.
anchored_advantages` + REINFORCE), tested in tests/algorithms/
policy_gradient_test.py. Fixed points: with the anchor at the current
policy both the prox and the magnet term vanish, so Nash Prox's is pi*_tau
(the tau-regularised equilibrium towards mu) and MPO's is an equilibrium of
the unregularised game.
"""

from __future__ import annotations

import numpy as np

from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import policy_gradient
from nlhf_jax.tabular import simplex


def anchored_gradient(logits: np.ndarray, prefs: np.ndarray,
                      opponent: np.ndarray, log_mu: np.ndarray, tau: float,
                      log_anchor: np.ndarray,
                      anchor_weight: float) -> np.ndarray:
  """dJ/dtheta = pi (h - <pi, h>) with the opponent and anchor held fixed.

  h = P opponent - tau log(pi / mu) - lam log(pi / a) (module docstring).

  Args:
    logits: theta, shape (..., n).
    prefs: preference matrices, shape (..., n, n).
    opponent: the opponent policy, shape (..., n).
    log_mu: log of the reference, shape (..., n).
    tau: weight >= 0 of KL(pi, mu).
    log_anchor: log of the anchor a, shape (..., n).
    anchor_weight: lam >= 0, the weight of KL(pi, a).

  Returns:
    shape (..., n), summing to 0 over the last axis.
  """
  log_pi = simplex.log_normalize(logits)
  pi = np.exp(log_pi)
  h = (equilibrium.preference_against(prefs, opponent) -
       tau * (log_pi - log_mu) - anchor_weight * (log_pi - log_anchor))
  return pi * (h - np.sum(pi * h, axis=-1, keepdims=True))


def _anchored_ascent(prefs, mu, learning_rate, num_steps, refresh_every,
                     gradient):
  """theta += lr * gradient(theta, log a, log mu, prefs); a <- pi_theta
  after every `refresh_every` steps, a_0 = mu."""
  if refresh_every < 1:
    raise ValueError(f"the refresh period must be >= 1; got {refresh_every}")
  anchor = {"log": None, "steps": 0}

  def next_logits(logits, mu, prefs):
    if anchor["log"] is None:
      anchor["log"] = np.broadcast_to(np.log(mu), logits.shape)
    logits = logits + learning_rate * gradient(logits, anchor["log"],
                                               np.log(mu), prefs)
    anchor["steps"] += 1
    if anchor["steps"] % refresh_every == 0:
      anchor["log"] = simplex.log_normalize(logits)
    return logits

  return policy_gradient.logit_path(prefs, mu, learning_rate, num_steps,
                                    None, next_logits)


def nash_prox_pg_ascent(prefs: np.ndarray, mu: np.ndarray, tau: float,
                        eta: float, inner_steps: int, learning_rate: float,
                        num_steps: int) -> np.ndarray:
  """The deep Nash Prox step on a softmax table, from log mu.

  Args:
    prefs: shape (..., n, n).
    mu: reference policy, shape (..., n), strictly positive.
    tau: >= 0.
    eta: the proximal step size > 0 (KL weight 1/eta towards pi_k).
    inner_steps: gradient steps per proximal step (>= 1).
    learning_rate: > 0.
    num_steps: T >= 0 gradient steps in all.

  Returns:
    log pi_0..log pi_T, shape (T + 1, ..., n).
  """
  if not eta > 0:
    raise ValueError(f"eta must be > 0; got {eta}")

  def gradient(logits, log_anchor, log_mu, prefs):
    return anchored_gradient(logits, prefs, np.exp(log_anchor), log_mu, tau,
                             log_anchor, 1.0 / eta)

  return _anchored_ascent(prefs, mu, learning_rate, num_steps, inner_steps,
                          gradient)


def mpo_pg_ascent(prefs: np.ndarray, mu: np.ndarray, tau: float,
                  refresh_every: int, learning_rate: float,
                  num_steps: int) -> np.ndarray:
  """The deep MPO step on a softmax table, from log mu (magnet_0 = mu).

  Args:
    prefs: shape (..., n, n).
    mu: reference policy and first magnet, shape (..., n), positive.
    tau: the magnet's weight > 0.
    refresh_every: K >= 1 steps between magnet refreshes.
    learning_rate: > 0.
    num_steps: T >= 0.

  Returns:
    log pi_0..log pi_T, shape (T + 1, ..., n).
  """
  if not tau > 0:
    raise ValueError(f"tau (the magnet's weight) must be > 0; got {tau}")

  def gradient(logits, log_anchor, log_mu, prefs):
    return anchored_gradient(logits, prefs, simplex.softmax(logits), log_mu,
                             0.0, log_anchor, tau)

  return _anchored_ascent(prefs, mu, learning_rate, num_steps, refresh_every,
                          gradient)

