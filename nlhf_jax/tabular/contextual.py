"""Contextual preference games: one preference matrix per prompt x ~ rho.

P(pi > pi') = E_{x~rho} pi(.|x)^T P_x pi'(.|x) and
KL_rho(pi, mu) = E_{x~rho} KL(pi(.|x), mu(.|x)) (paper §1.1, §1.3). Policies
are arrays of shape (X, n): row x is pi(.|x).
"""

import dataclasses
from typing import Optional

import numpy as np

from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import games
from nlhf_jax.tabular import simplex


@dataclasses.dataclass(frozen=True)
class ContextualGame:
  """A contextual preference game, validated on construction.

  Attributes:
    prefs: per-prompt preference matrices, shape (X, n, n).
    mu: per-prompt reference policies, shape (X, n), strictly positive.
    rho: prompt distribution, shape (X,), strictly positive.
  """
  prefs: np.ndarray
  mu: np.ndarray
  rho: np.ndarray

  def __post_init__(self):
    prefs = games.as_preference_matrix(self.prefs, name="prefs")
    if prefs.ndim != 3:
      raise ValueError(f"prefs must have shape (X, n, n); got {prefs.shape}")
    num_prompts, n = prefs.shape[0], prefs.shape[-1]
    mu = simplex.as_policy(self.mu, "mu", num_responses=n,
                           strictly_positive=True)
    if mu.shape != (num_prompts, n):
      raise ValueError(f"mu must have shape (X, n) = {(num_prompts, n)}; got "
                       f"{mu.shape}")
    rho = simplex.as_policy(self.rho, "rho", num_responses=num_prompts,
                            strictly_positive=True)
    if rho.ndim != 1:
      raise ValueError(f"rho must have shape (X,) = ({num_prompts},); got "
                       f"{rho.shape}")
    object.__setattr__(self, "prefs", prefs)
    object.__setattr__(self, "mu", mu)
    object.__setattr__(self, "rho", rho)

  @property
  def num_prompts(self) -> int:
    return self.prefs.shape[0]

  @property
  def num_responses(self) -> int:
    return self.prefs.shape[-1]


def random_contextual_game(num_prompts: int,
                           num_responses: int,
                           rng: np.random.Generator,
                           mu_concentration: Optional[float] = 1.0
                           ) -> ContextualGame:
  """A random contextual game.

  Args:
    num_prompts: X >= 1.
    num_responses: n >= 1.
    rng: NumPy generator.
    mu_concentration: mu(.|x) ~ Dirichlet(concentration * 1); None gives
      uniform mu.

  Returns:
    ContextualGame with rho ~ Dirichlet(1) (floored away from 0).
  """
  prefs = games.random_preference_matrix(num_responses, rng, (num_prompts,))
  if mu_concentration is None:
    mu = np.full((num_prompts, num_responses), 1.0 / num_responses)
  else:
    mu = rng.dirichlet(np.full(num_responses, mu_concentration), num_prompts)
    mu = np.maximum(mu, 1e-6)
    mu /= mu.sum(axis=-1, keepdims=True)
  rho = rng.dirichlet(np.ones(num_prompts)) + 1e-3
  return ContextualGame(prefs=prefs, mu=mu, rho=rho / rho.sum())


def _check_policy(game: ContextualGame, pi: np.ndarray, name: str):
  pi = simplex.as_policy(pi, name, num_responses=game.num_responses)
  if pi.shape != game.mu.shape:
    raise ValueError(f"{name} must have shape (X, n) = {game.mu.shape}; got "
                     f"{pi.shape}")
  return pi


def regularized_preference(game: ContextualGame, pi: np.ndarray,
                           pi_prime: np.ndarray, tau: float) -> float:
  """P_tau(pi > pi') = P(pi > pi') - tau KL_rho(pi, mu) + tau KL_rho(pi', mu).

  Args:
    game: the contextual game.
    pi: policy, shape (X, n).
    pi_prime: policy, shape (X, n).
    tau: regularisation strength >= 0.

  Returns:
    The scalar rho-weighted regularised preference.
  """
  pi = _check_policy(game, pi, "pi")
  pi_prime = _check_policy(game, pi_prime, "pi_prime")
  per_prompt = equilibrium.regularized_preference(game.prefs, pi, pi_prime,
                                                  game.mu, tau)
  return float(game.rho @ per_prompt)


def exploitability(game: ContextualGame, pi: np.ndarray, tau: float) -> float:
  """max_pi' P_tau(pi' > pi) - 1/2 for the contextual game.

  The best response decomposes over prompts (the objective is a rho-weighted
  sum of per-prompt terms), so it is evaluated by the per-prompt regularised
  best response (tau > 0) or best pure response (tau = 0).

  Args:
    game: the contextual game.
    pi: policy, shape (X, n).
    tau: regularisation strength >= 0.

  Returns:
    The scalar exploitability (>= 0, 0 exactly at the equilibrium).
  """
  pi = _check_policy(game, pi, "pi")
  if tau == 0:
    against = equilibrium.preference_against(game.prefs, pi)
    best = np.eye(game.num_responses)[np.argmax(against, axis=-1)]
  else:
    best = equilibrium.regularized_best_response(game.prefs, pi, game.mu, tau)
  return regularized_preference(game, best, pi, tau) - 0.5


def solve_nash(game: ContextualGame,
               tau: float,
               tol: float = 1e-11) -> equilibrium.NashSolution:
  """The contextual regularised Nash equilibrium pi*_tau(.|x), shape (X, n).

  All prompts are solved jointly as one batch of games (the equilibrium of
  the rho-weighted game is the per-prompt equilibrium because rho > 0).

  Args:
    game: the contextual game.
    tau: > 0.
    tol: fixed-point residual target (nats), per prompt.

  Returns:
    NashSolution with policy of shape (X, n).
  """
  return equilibrium.solve_regularized_nash(game.prefs, game.mu, tau, tol=tol)
