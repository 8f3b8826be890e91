"""Exact proximal dynamics: Nash Mirror Prox and magnetic preference optimisation.

Both take exact proximal steps on the preference game. For an opponent pi'
and weights tau (towards an anchor a) and 1/eta (towards the previous
iterate pi_k), the step

  argmax_pi  P(pi > pi') - tau KL(pi, a) - (1/eta) KL(pi, pi_k)

has the closed form (`proximal_step`)

  log pi = (P pi' + tau log a + (1/eta) log pi_k) / (tau + 1/eta) + const.

**Nash Mirror Prox** (Tiapkin, Calandriello, ... Valko, Menard, 2025) makes
two such steps per iteration, anchored at the reference mu: a leading step
against pi_k, then the step against the leading policy, both from pi_k:

  pi_{k+1/2} = prox(opponent pi_k),  pi_{k+1} = prox(opponent pi_{k+1/2}).

Its paper states linear convergence of KL(pi*_tau, pi_k) to the regularised
Nash equilibrium (`nash_mirror_prox`); tests/tabular/prox_test.py checks a
contraction of 1 / (1 + 2 eta tau) per iteration, and that it needs a small
enough eta.

**Magnetic preference optimisation** (MPO, Wang et al., ICLR 2025) makes one
step per iteration against the current policy, anchored at a *magnet* that
is refreshed to the current policy every `refresh_every` steps:

  pi_{t+1} = prox(opponent pi_t; anchor = magnet),
  magnet <- pi_{t+1} every K steps.

With the magnet fixed it converges to the regularised equilibrium of the
game anchored at the magnet; refreshing the magnet moves that anchor, and
the paper states last-iterate convergence to a Nash equilibrium of the
*unregularised* game (`magnetic_preference_optimization`).

**Nash Prox** (`nash_prox`) makes one proximal step per iteration, against
pi_k; its deep form is a few policy-
gradient steps per proximal step against a frozen copy of pi_k
(`tabular.anchored`). The tests find
it on a cyclic game with an interior equilibrium, and a last iterate that
keeps spiking at some settings on a game whose equilibrium leaves
responses out.
"""

from __future__ import annotations

import numpy as np

from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import games
from nlhf_jax.tabular import simplex


def proximal_step(prefs: np.ndarray, opponent: np.ndarray,
                  log_anchor: np.ndarray, log_previous: np.ndarray,
                  tau: float, eta: float) -> np.ndarray:
  """log argmax_pi P(pi > opponent) - tau KL(pi, a) - KL(pi, pi_k) / eta."""
  logits = (equilibrium.preference_against(prefs, opponent) +
            tau * log_anchor + log_previous / eta) / (tau + 1.0 / eta)
  return simplex.log_normalize(logits)


def _setup(prefs, mu, eta, num_steps):
  prefs = games.as_preference_matrix(prefs)
  mu = simplex.as_policy(mu, "mu", num_responses=prefs.shape[-1],
                         strictly_positive=True)
  if not eta > 0 or num_steps < 0:
    raise ValueError(f"need eta > 0 and num_steps >= 0; got {eta} and "
                     f"{num_steps}")
  log_mu = np.broadcast_to(np.log(mu), prefs.shape[:-1])
  return prefs, log_mu


def nash_prox(prefs: np.ndarray, mu: np.ndarray, tau: float, eta: float,
              num_steps: int) -> np.ndarray:
  """Nash Prox from mu: one proximal step per iteration, against pi_k.

  pi_{k+1} = prox(opponent pi_k; anchor mu; previous pi_k): the step the
  deep Nash Prox approximates with a few policy-gradient steps against a
  frozen copy of pi_k (`tabular.anchored.nash_prox_pg_ascent`). Arguments
  and result as `nash_mirror_prox` (one preference evaluation per
  iteration).
  """
  prefs, log_mu = _setup(prefs, mu, eta, num_steps)
  out = np.empty((num_steps + 1,) + log_mu.shape)
  out[0] = log_mu
  for k in range(num_steps):
    out[k + 1] = proximal_step(prefs, np.exp(out[k]), log_mu, out[k], tau,
                               eta)
  return out


def nash_mirror_prox(prefs: np.ndarray, mu: np.ndarray, tau: float,
                     eta: float, num_steps: int) -> np.ndarray:
  """Nash Mirror Prox from mu (module docstring).

  Args:
    prefs: shape (..., n, n).
    mu: reference policy, shape (..., n), strictly positive.
    tau: >= 0 (0: the unregularised game).
    eta: the proximal step size > 0.
    num_steps: K >= 0 iterations (two preference evaluations each).

  Returns:
    log pi_0..log pi_K, shape (K + 1, ..., n).
  """
  prefs, log_mu = _setup(prefs, mu, eta, num_steps)
  out = np.empty((num_steps + 1,) + log_mu.shape)
  out[0] = log_mu
  for k in range(num_steps):
    lead = proximal_step(prefs, np.exp(out[k]), log_mu, out[k], tau, eta)
    out[k + 1] = proximal_step(prefs, np.exp(lead), log_mu, out[k], tau, eta)
  return out


def magnetic_preference_optimization(prefs: np.ndarray, mu: np.ndarray,
                                     tau: float, eta: float, num_steps: int,
                                     refresh_every: int) -> np.ndarray:
  """MPO from mu with the magnet refreshed every K steps (module docstring).

  Args:
    prefs: shape (..., n, n).
    mu: reference policy and first magnet, shape (..., n), positive.
    tau: the magnet's weight > 0.
    eta: the step size > 0.
    num_steps: T >= 0.
    refresh_every: K >= 1 (the magnet becomes the current policy after
      every K steps); a K larger than T keeps the magnet at mu.

  Returns:
    log pi_0..log pi_T, shape (T + 1, ..., n).
  """
  prefs, log_mu = _setup(prefs, mu, eta, num_steps)
  if not tau > 0 or refresh_every < 1:
    raise ValueError(f"need tau > 0 and refresh_every >= 1; got {tau} and "
                     f"{refresh_every}")
  out = np.empty((num_steps + 1,) + log_mu.shape)
  out[0] = log_magnet = log_mu
  for t in range(num_steps):
    out[t + 1] = proximal_step(prefs, np.exp(out[t]), log_magnet, out[t],
                               tau, eta)
    if (t + 1) % refresh_every == 0:
      log_magnet = out[t + 1]
  return out
