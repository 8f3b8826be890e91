"""The exact target of every algorithm on a finite-answer world (NumPy).

Notation: outcomes o ∈ {answers} ∪ {other}, P* (X, n, n) over them
(`population.World.preference`), μ (X, n) the reference's outcome
distribution, τ the KL weight.

Why the outcome game's equilibrium is the sequence game's. A response y
scores only through its outcome o(y), so P(y ≻ π') = P*(o(y) ≻ π'_o) with
π'_o the outcome distribution of π'. The τ-regularised best response to π'
over sequences is the Gibbs policy

  π(y) ∝ μ(y) exp(P*(o(y) ≻ π'_o) / τ),

whose ratio π(y)/μ(y) depends on y only through o(y): within an outcome
it keeps μ's conditional μ(y | o), and its outcome distribution is
π_o(o) ∝ μ_o(o) exp(P*(o ≻ π'_o) / τ), the outcome game's best response.
The fixed point π = BR(π) is therefore the outcome game's π*_τ lifted by
μ's conditionals (`lift_to_sequences`), and every KL between such lifted
policies equals the KL between their outcome distributions. The same holds
for the best response to μ and for μ·exp(r/τ) with r a function of the
outcome. `tests/finite_world/targets_test.py` checks it on an
autoregressive game solved over all its sequences.

Targets (τ > 0; τ = 0 gives the unregularised limits):

  Nash-MD-PG (β < 1), self-play (β = 0), Nash-EMA-PG, Online IPO:
      π*_τ, the fixed point π ∝ μ exp(P*(· ≻ π)/τ)
      (`tabular.equilibrium.solve_regularized_nash`);
  best response (Nash-MD-PG with β = 1): μ exp(P*(· ≻ μ)/τ) / Z;
  RLHF: μ exp(r/τ) / Z with r the Bradley–Terry fit of P* that its reward
      model converges to (`bradley_terry_reward`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from nlhf_jax.tabular import bradley_terry
from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import simplex

# RLHF's reward for responses no comparison contains (answers not offered,
# "other"): this far below the lowest fitted answer (see bradley_terry_reward).
UNSEEN_REWARD_MARGIN = 10.0


def regularized_nash(prefs: np.ndarray, mu: np.ndarray,
                     tau: float) -> np.ndarray:
  """π*_τ per prompt, shape (X, n); τ = 0: an LP Nash equilibrium."""
  if tau == 0:
    return np.stack([equilibrium.solve_nash_lp(p)[0] for p in prefs])
  return equilibrium.solve_regularized_nash(prefs, mu, tau).policy


def best_response_to_reference(prefs: np.ndarray, mu: np.ndarray,
                               tau: float) -> np.ndarray:
  """argmax_π P*(π ≻ μ) − τ KL(π ‖ μ) = μ exp(P*(· ≻ μ)/τ) / Z, (X, n).

  τ = 0: uniform over the outcomes maximising P*(· ≻ μ).
  """
  if tau == 0:
    against = equilibrium.preference_against(prefs, mu)
    best = against >= against.max(-1, keepdims=True) - 1e-12
    return best / best.sum(-1, keepdims=True)
  return equilibrium.regularized_best_response(prefs, mu, mu, tau)


def bradley_terry_reward(prefs: np.ndarray, mu: np.ndarray,
                         offered: np.ndarray,
                         margin: float = UNSEEN_REWARD_MARGIN) -> np.ndarray:
  """The Bradley–Terry reward an RLHF reward model converges to, (X, n).

  Its comparisons are pairs of offered answers drawn from μ ⊗ μ (the SFT
  policy's samples, as in the paper's pipeline) and labelled by P*; the
  population maximum-likelihood fit on that pair distribution is
  `tabular.bradley_terry.fit_bradley_terry(P*, w = μ μᵀ)` on the offered
  answers. Outcomes that never appear in a comparison (answers not offered,
  "other") lose to everything under P*, where the fit diverges to −∞; they
  get `margin` below the lowest fitted reward (σ(−10) ≈ 5e-5 instead of 0).

  Args:
    prefs: P*, (X, n, n).
    mu: the pair distribution's marginal, (X, n).
    offered: bool (X, n), the answers offered at each prompt.
    margin: > 0, see above.

  Returns:
    Rewards (X, n), centred over the offered answers.
  """
  out = np.empty(mu.shape)
  for x, (p, m, o) in enumerate(zip(prefs, mu, offered)):
    idx = np.flatnonzero(o)
    weights = np.outer(m[idx], m[idx])  # The MLE ignores their scale.
    fit = bradley_terry.fit_bradley_terry(
        p[np.ix_(idx, idx)], pair_weights=weights / weights.max())
    out[x] = fit.min() - margin
    out[x, idx] = fit
  return out


def uniform_offered(offered: np.ndarray) -> np.ndarray:
  """Uniform over each prompt's offered answers, (X, n) (the SFT data's)."""
  offered = np.asarray(offered, np.float64)
  return offered / offered.sum(-1, keepdims=True)


def rlhf_target(reward: np.ndarray, mu: np.ndarray, tau: float) -> np.ndarray:
  """argmax_π E_π r − τ KL(π ‖ μ) = μ exp(r/τ) / Z, (X, n); τ = 0: argmax."""
  if tau == 0:
    best = reward >= reward.max(-1, keepdims=True) - 1e-12
    return best / best.sum(-1, keepdims=True)
  return np.exp(simplex.log_normalize(simplex.safe_log(mu) + reward / tau))


def lift_to_sequences(outcome_policy: np.ndarray, mu_sequences: np.ndarray,
                      outcome_of: np.ndarray) -> np.ndarray:
  """π(y) = π_o(o(y)) μ(y) / μ_o(o(y)): an outcome policy over sequences.

  Args:
    outcome_policy: π_o, shape (n,).
    mu_sequences: μ over every sequence, shape (S,), strictly positive.
    outcome_of: o(y) in [0, n) per sequence, int (S,).

  Returns:
    The sequence policy, shape (S,).
  """
  mu_outcomes = np.bincount(outcome_of, weights=mu_sequences,
                            minlength=outcome_policy.shape[0])
  return outcome_policy[outcome_of] * mu_sequences / mu_outcomes[outcome_of]


def outcome_distribution(sequence_policy: np.ndarray, outcome_of: np.ndarray,
                         num_outcomes: Optional[int] = None) -> np.ndarray:
  """Σ_{y: o(y) = o} π(y), shape (n,)."""
  return np.bincount(outcome_of, weights=sequence_policy,
                     minlength=num_outcomes or 0)
