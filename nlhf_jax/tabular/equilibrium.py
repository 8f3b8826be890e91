"""Regularised and unregularised Nash equilibria of preference games.

Notation (paper §1): P(pi > pi') = pi^T P pi', P(y > pi') = (P pi')_y and the
regularised preference

  P_tau(pi > pi') = pi^T P pi' - tau KL(pi, mu) + tau KL(pi', mu).

The regularised game is symmetric and constant-sum (value 1/2); its unique
Nash equilibrium pi*_tau is the fixed point pi ∝ mu exp(P(y > pi) / tau).
All functions accept leading batch axes (one game per prompt): prefs has
shape (..., n, n), policies (..., n).
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np
from scipy import optimize
from scipy import special

from nlhf_jax.tabular import games
from nlhf_jax.tabular import simplex


# Continuation schedule for small tau: solve at tau = 0.3, 0.09, ... (each
# stage to CONTINUATION_TOL nats) and warm-start the next stage from it.
CONTINUATION_START = 0.3
CONTINUATION_RATIO = 0.3
CONTINUATION_TOL = 1e-8


def _check_tau(tau: float, allow_zero: bool) -> float:
  tau = float(tau)
  if not np.isfinite(tau) or tau < 0 or (tau == 0 and not allow_zero):
    need = ">= 0" if allow_zero else "> 0"
    raise ValueError(f"tau must be finite and {need}; got {tau}")
  return tau


def preference_against(prefs: np.ndarray, opponent: np.ndarray) -> np.ndarray:
  """P(y > pi') for every response y: (P pi')_y, shape (..., n)."""
  return np.matmul(prefs, opponent[..., None])[..., 0]


def policy_preference(prefs: np.ndarray, pi: np.ndarray,
                      pi_prime: np.ndarray) -> np.ndarray:
  """P(pi > pi') = pi^T P pi', shape (...)."""
  return np.einsum("...i,...ij,...j->...", pi, prefs, pi_prime)


def regularized_preference(prefs: np.ndarray, pi: np.ndarray,
                           pi_prime: np.ndarray, mu: np.ndarray,
                           tau: float) -> np.ndarray:
  """P_tau(pi > pi') = pi^T P pi' - tau KL(pi, mu) + tau KL(pi', mu).

  Args:
    prefs: preference matrices, shape (..., n, n).
    pi: first policy, shape (..., n).
    pi_prime: second policy, shape (..., n).
    mu: reference policy, shape (..., n), strictly positive.
    tau: regularisation strength >= 0.

  Returns:
    Regularised preferences, shape (...).
  """
  tau = _check_tau(tau, allow_zero=True)
  value = policy_preference(prefs, pi, pi_prime)
  if tau == 0:
    return value
  return value - tau * (simplex.kl_divergence(pi, mu) -
                        simplex.kl_divergence(pi_prime, mu))


def regularized_best_response_logits(prefs: np.ndarray, opponent: np.ndarray,
                                     mu: np.ndarray, tau: float) -> np.ndarray:
  """log of argmax_pi P_tau(pi > opponent) = log softmax(log mu + P pi'/tau)."""
  tau = _check_tau(tau, allow_zero=False)
  return simplex.log_normalize(
      simplex.safe_log(mu) + preference_against(prefs, opponent) / tau)


def regularized_best_response(prefs: np.ndarray, opponent: np.ndarray,
                              mu: np.ndarray, tau: float) -> np.ndarray:
  """The Gibbs best response pi(y) ∝ mu(y) exp(P(y > opponent) / tau).

  Args:
    prefs: shape (..., n, n).
    opponent: the opponent's policy pi', shape (..., n).
    mu: reference policy, shape (..., n).
    tau: regularisation strength > 0.

  Returns:
    argmax_pi P_tau(pi > pi'), shape (..., n).
  """
  return np.exp(regularized_best_response_logits(prefs, opponent, mu, tau))


def exploitability(prefs: np.ndarray,
                   pi: np.ndarray,
                   mu: Optional[np.ndarray] = None,
                   tau: float = 0.0) -> np.ndarray:
  """How much a best response gains against pi: max_pi' P_tau(pi' > pi) - 1/2.

  For tau > 0 the maximum is attained by the Gibbs best response and equals
  tau log sum_y mu(y) exp(P(y > pi)/tau) + tau KL(pi, mu) - 1/2. For tau = 0
  it is max_y P(y > pi) - 1/2. The result is >= 0 (up to rounding) and = 0
  exactly at the Nash equilibrium; since the game is constant-sum it also equals
  1/2 - min_pi' P_tau(pi > pi').

  Args:
    prefs: shape (..., n, n).
    pi: policy, shape (..., n).
    mu: reference policy, shape (..., n); required when tau > 0.
    tau: regularisation strength >= 0.

  Returns:
    Exploitability, shape (...).
  """
  tau = _check_tau(tau, allow_zero=True)
  against = preference_against(prefs, pi)
  if tau == 0:
    return against.max(axis=-1) - 0.5
  if mu is None:
    raise ValueError("exploitability with tau > 0 needs the reference mu")
  log_mu = simplex.safe_log(mu)
  best = tau * special.logsumexp(log_mu + against / tau, axis=-1)
  return best + tau * simplex.kl_divergence(pi, mu) - 0.5


def fixed_point_residual(prefs: np.ndarray, log_pi: np.ndarray,
                         log_mu: np.ndarray, tau: float) -> np.ndarray:
  """Residual of log pi = log mu + P pi / tau + const, in nats.

  Args:
    prefs: shape (..., n, n).
    log_pi: log-policy, shape (..., n), normalised.
    log_mu: log reference policy, shape (..., n).
    tau: > 0.

  Returns:
    max_y |r_y - mean(r)| with r = log pi - log mu - P pi / tau, shape (...);
    zero exactly at pi*_tau.
  """
  r = log_pi - log_mu - preference_against(prefs, np.exp(log_pi)) / tau
  return np.abs(r - r.mean(axis=-1, keepdims=True)).max(axis=-1)


@dataclasses.dataclass(frozen=True)
class NashSolution:
  """Regularised Nash equilibrium and how well it was solved.

  Attributes:
    policy: pi*_tau, shape (..., n).
    log_policy: log pi*_tau, shape (..., n).
    residual: fixed_point_residual at the solution, shape (...).
    exploitability: exploitability of the solution, shape (...).
    iterations: extragradient iterations used.
    newton_steps: accepted Newton steps.
  """
  policy: np.ndarray
  log_policy: np.ndarray
  residual: np.ndarray
  exploitability: np.ndarray
  iterations: int
  newton_steps: int


def _extragradient_step(prefs, z, log_mu, tau, eta):
  """One mirror-prox step on the tau-strongly monotone game operator."""
  def prox(g):
    return simplex.log_normalize((z + eta * tau * log_mu + eta * g) /
                                 (1.0 + eta * tau))
  half = prox(preference_against(prefs, np.exp(z)))
  return prox(preference_against(prefs, np.exp(half)))


def _newton_direction(prefs, z, log_mu, tau):
  """Newton direction for F(z) = z - log mu - P softmax(z)/tau ∈ span(1).

  Solves [J, -1; 1^T, 0] [d; c] = [-F; 0] with J = I - P (diag(pi) -
  pi pi^T)/tau, i.e. F(z + d) ≈ c 1 with the gauge sum(d) = 0.
  """
  pi = np.exp(z)
  n = z.shape[-1]
  f = z - log_mu - preference_against(prefs, pi) / tau
  jac_softmax = pi[..., :, None] * (np.eye(n) - pi[..., None, :])
  jac = np.eye(n) - np.einsum("...ij,...jk->...ik", prefs, jac_softmax) / tau
  ones = np.ones(z.shape[:-1] + (n, 1))
  top = np.concatenate([jac, -ones], axis=-1)
  bottom = np.concatenate(
      [np.swapaxes(ones, -1, -2), np.zeros(z.shape[:-1] + (1, 1))], axis=-1)
  system = np.concatenate([top, bottom], axis=-2)
  rhs = np.concatenate([-f, np.zeros(z.shape[:-1] + (1,))], axis=-1)
  try:
    return np.linalg.solve(system, rhs[..., None])[..., :n, 0]
  except np.linalg.LinAlgError:
    return np.zeros_like(z)


def _damped_newton(prefs, z, log_mu, tau, residual):
  """Backtracking Newton: per game, the longest step in {1, 1/2, .., 1/8}
  that at least halves the residual. Returns (z, residual, accepted mask)."""
  direction = _newton_direction(prefs, z, log_mu, tau)
  accepted = np.zeros(residual.shape, dtype=bool)
  for length in (1.0, 0.5, 0.25, 0.125):
    candidate = simplex.log_normalize(z + length * direction)
    new_residual = fixed_point_residual(prefs, candidate, log_mu, tau)
    take = ~accepted & (new_residual <= 0.5 * residual)
    z = np.where(take[..., None], candidate, z)
    residual = np.where(take, new_residual, residual)
    accepted |= take
  return z, residual, accepted


def _prepare_game(prefs, mu, tau):
  """Validates and broadcasts; returns (prefs, mu, log_mu, tau)."""
  prefs = games.as_preference_matrix(prefs)
  n = prefs.shape[-1]
  mu = simplex.as_policy(mu, "mu", num_responses=n, strictly_positive=True)
  tau = _check_tau(tau, allow_zero=False)
  batch = np.broadcast_shapes(prefs.shape[:-2], mu.shape[:-1])
  log_mu = simplex.log_normalize(np.log(mu))
  return (np.broadcast_to(prefs, batch + (n, n)), mu,
          np.broadcast_to(log_mu, batch + (n,)), tau)


def _continuation_taus(tau):
  """[(tau_k, tol_k)] for tau_k = 0.3, 0.09, ... while tau_k > tau."""
  stages, stage_tau = [], CONTINUATION_START
  while stage_tau > tau:
    stages.append((stage_tau, CONTINUATION_TOL))
    stage_tau *= CONTINUATION_RATIO
  return stages


def _solve_stage(prefs, z, log_mu, tau, tol, max_iter, step_size, newton):
  """Newton with mirror-prox fallback from z until the residual is <= tol.

  After a rejected Newton step, the next attempt waits for 1, 2, 4, .., 64
  mirror-prox steps. Returns (z, residual, iterations, newton_steps).
  """
  residual = fixed_point_residual(prefs, z, log_mu, tau)
  iterations = newton_steps = wait = 0
  backoff = 1
  while np.max(residual) > tol and iterations < max_iter:
    iterations += 1
    if newton and wait == 0:
      z, residual, accepted = _damped_newton(prefs, z, log_mu, tau, residual)
      if np.all(accepted | (residual <= tol)):
        newton_steps += 1
        backoff = 1
        continue
      wait, backoff = backoff, min(2 * backoff, 64)
    wait = max(wait - 1, 0)
    z = _extragradient_step(prefs, z, log_mu, tau, step_size)
    residual = fixed_point_residual(prefs, z, log_mu, tau)
  return z, residual, iterations, newton_steps


def solve_regularized_nash(prefs: np.ndarray,
                           mu: np.ndarray,
                           tau: float,
                           tol: float = 1e-11,
                           max_iter: int = 100_000,
                           step_size: float = 1.0,
                           newton: bool = True) -> NashSolution:
  """Solves for the regularised Nash equilibrium pi*_tau to machine precision.

  Solves log pi = log mu + P pi / tau + c in log space with damped Newton
  steps (kept only where they halve the residual; warm-started for tau < 0.3
  by continuation along tau = 0.3, 0.09, ...) and mirror-prox as fallback
  (extragradient with the KL term in closed form: linear convergence on this
  tau-strongly-monotone game for step_size <= 2, as P pi is 1/2-Lipschitz
  from l1 to l-inf). Solves a batch of games at once. Rounding limits the
  attainable residual to roughly n * 1e-16 / tau nats.

  Args:
    prefs: preference matrices, shape (..., n, n).
    mu: reference policies, shape (..., n), strictly positive.
    tau: regularisation strength > 0.
    tol: target fixed_point_residual (nats).
    max_iter: iteration budget (Newton and mirror-prox steps together).
    step_size: mirror-prox step eta in (0, 2].
    newton: try Newton steps first; False runs mirror-prox only.

  Returns:
    NashSolution with policy of shape (..., n).

  Raises:
    ValueError: on invalid inputs.
    RuntimeError: if the residual is not below tol after max_iter iterations.
  """
  prefs, mu, log_mu, tau = _prepare_game(prefs, mu, tau)
  if not 0 < step_size <= 2:
    raise ValueError(f"step_size must lie in (0, 2]; got {step_size}")
  z, iterations, newton_steps = np.array(log_mu), 0, 0
  stages = _continuation_taus(tau) if newton else []
  for stage_tau, stage_tol in stages + [(tau, tol)]:
    z, residual, used, accepted = _solve_stage(prefs, z, log_mu, stage_tau,
                                               stage_tol, max_iter - iterations,
                                               step_size, newton)
    iterations, newton_steps = iterations + used, newton_steps + accepted
  if np.max(residual) > tol:
    raise RuntimeError(
        f"solve_regularized_nash did not reach residual {tol:g} in "
        f"{max_iter} iterations (tau={tau:g}, n={prefs.shape[-1]}); residual "
        f"{np.max(residual):g}. Rounding limits it to about n*1e-16/tau: "
        "raise tol for very small tau.")
  if newton:  # One more (safeguarded) step: quadratic convergence is cheap.
    z, residual, _ = _damped_newton(prefs, z, log_mu, tau, residual)
  policy = np.exp(z)
  return NashSolution(
      policy=policy,
      log_policy=z,
      residual=residual,
      exploitability=exploitability(prefs, policy, mu, tau),
      iterations=iterations,
      newton_steps=newton_steps)


def solve_nash_lp(prefs: np.ndarray,
                  support_tol: float = 1e-9) -> Tuple[np.ndarray, float]:
  """An unregularised Nash equilibrium max_pi min_pi' P(pi > pi') by LP.

  Solves max v s.t. (P^T pi)_j >= v for all j, sum(pi) = 1, pi >= 0 with
  HiGHS, then polishes: on the LP's support S it solves the equalising system
  (P - 1/2)[S, S]^T pi_S = 0, sum(pi_S) = 1 by least squares and keeps the
  polished policy when it is still a valid equilibrium (so equilibria with
  rational entries come out to machine precision).

  Args:
    prefs: one preference matrix, shape (n, n).
    support_tol: entries above this count as the support.

  Returns:
    (pi, value): an equilibrium of shape (n,) and the game value
    min_j P(pi > y_j), which is 1/2 for a valid preference matrix.
  """
  prefs = games.as_preference_matrix(prefs)
  if prefs.ndim != 2:
    raise ValueError(f"solve_nash_lp takes one (n, n) matrix; got shape "
                     f"{prefs.shape}")
  n = prefs.shape[0]
  cost = np.zeros(n + 1)
  cost[-1] = -1.0
  a_ub = np.concatenate([-prefs.T, np.ones((n, 1))], axis=1)
  a_eq = np.concatenate([np.ones((1, n)), np.zeros((1, 1))], axis=1)
  bounds = [(0.0, None)] * n + [(None, None)]
  result = optimize.linprog(cost, A_ub=a_ub, b_ub=np.zeros(n), A_eq=a_eq,
                            b_eq=np.ones(1), bounds=bounds, method="highs")
  if not result.success:
    raise RuntimeError(f"linprog failed on the Nash LP: {result.message}")
  pi = np.clip(result.x[:n], 0.0, None)
  pi /= pi.sum()
  polished = _polish_on_support(prefs, pi, support_tol)
  if polished is not None:
    pi = polished
  return pi, float((pi @ prefs).min())


def _polish_on_support(prefs, pi, support_tol):
  """Re-solves the equalising linear system on pi's support, if consistent."""
  support = np.flatnonzero(pi > support_tol)
  adv = prefs - 0.5
  system = np.vstack([adv[np.ix_(support, support)].T, np.ones(support.size)])
  rhs = np.zeros(support.size + 1)
  rhs[-1] = 1.0
  x, *_ = np.linalg.lstsq(system, rhs, rcond=None)
  if np.any(x < 0) or np.abs(system @ x - rhs).max() > 1e-12:
    return None
  candidate = np.zeros_like(pi)
  candidate[support] = x
  if (candidate @ adv).min() < -1e-12:
    return None
  return candidate


def solve_restricted_nash(prefs: np.ndarray,
                          vertices: np.ndarray) -> Tuple[np.ndarray, float]:
  """Nash equilibrium when both players are restricted to conv(vertices).

  The restricted game between vertex policies v_a, v_b has preference matrix
  Q[a, b] = v_a^T P v_b, itself a valid preference matrix; its LP equilibrium
  w gives the restricted equilibrium policy w^T V.

  Args:
    prefs: shape (n, n).
    vertices: V, shape (m, n), each row a policy.

  Returns:
    (policy of shape (n,), value) of the restricted game.
  """
  prefs = games.as_preference_matrix(prefs)
  verts = simplex.as_policy(vertices, "vertices",
                            num_responses=prefs.shape[-1])
  if verts.ndim != 2:
    raise ValueError(f"vertices must have shape (m, n); got {verts.shape}")
  restricted = verts @ prefs @ verts.T
  restricted = 0.5 * (restricted + 1.0 - restricted.T)  # Remove rounding.
  weights, value = solve_nash_lp(restricted)
  return weights @ verts, value
