"""Bradley-Terry (Elo) models on a finite response set.

A Bradley-Terry model with scores r assigns P(y_i > y_j) = sigmoid(r_i - r_j).
The RLHF route fits r to preference data by maximum likelihood, then
maximises the expected score; its unregularised optimum is deterministic.
"""

from typing import Optional

import numpy as np
from scipy import special

from nlhf_jax.tabular import games


def bradley_terry_matrix(scores: np.ndarray) -> np.ndarray:
  """P[i, j] = sigmoid(r_i - r_j) for scores r (..., n); shape (..., n, n)."""
  r = np.asarray(scores, dtype=np.float64)
  if r.ndim < 1 or not np.all(np.isfinite(r)):
    raise ValueError(f"scores must be a finite array of shape (..., n); got "
                     f"shape {r.shape}")
  diff = r[..., :, None] - r[..., None, :]
  prefs = special.expit(diff)
  return 0.5 * (prefs + 1.0 - np.swapaxes(prefs, -1, -2))


def _negative_log_likelihood(scores, prefs, weights):
  """-LL(r), its gradient and Hessian with respect to r[1:] (r[0] is fixed)."""
  diff = scores[:, None] - scores[None, :]
  value = -np.sum(weights * prefs * special.log_expit(diff))
  # d LL / d r_i = sum_j w_ij (P_ij - sigmoid(r_i - r_j)), using w = w^T.
  grad = -np.sum(weights * (prefs - special.expit(diff)), axis=1)
  curvature = weights * special.expit(diff) * special.expit(-diff)
  hess = np.diag(curvature.sum(axis=1)) - curvature
  return value, grad[1:], hess[1:, 1:]


def fit_bradley_terry(prefs: np.ndarray,
                      pair_weights: Optional[np.ndarray] = None,
                      max_newton_steps: int = 100) -> np.ndarray:
  """Maximum-likelihood Bradley-Terry scores for a preference matrix.

  Maximises sum_{i != j} w_ij [P_ij log sigmoid(r_i - r_j)], the expected
  log-likelihood of comparisons of the pair (y_i, y_j) drawn with weight
  w_ij and labelled by P. The objective is concave and shift-invariant; the
  returned scores are centred (sum 0). With uniform weights the MLE ranks
  responses by their Borda score sum_j P_ij.

  Args:
    prefs: one preference matrix, shape (n, n).
    pair_weights: w, shape (n, n), non-negative (the sampling distribution of
      pairs); defaults to uniform over ordered pairs. It is symmetrised.
    max_newton_steps: budget of Newton steps (it usually needs < 10).

  Returns:
    Centred scores r, shape (n,).

  Raises:
    RuntimeError: if the optimiser fails (e.g. the MLE diverges because some
      response wins or loses every comparison it takes part in).
  """
  prefs = games.as_preference_matrix(prefs)
  if prefs.ndim != 2:
    raise ValueError(f"fit_bradley_terry takes one (n, n) matrix; got "
                     f"{prefs.shape}")
  n = prefs.shape[0]
  w = np.ones((n, n)) if pair_weights is None else np.asarray(
      pair_weights, np.float64)
  if w.shape != (n, n) or np.any(w < 0) or not np.all(np.isfinite(w)):
    raise ValueError(f"pair_weights must be finite, non-negative, shape "
                     f"({n}, {n}); got shape {w.shape}")
  w = 0.5 * (w + w.T) * (1.0 - np.eye(n))

  def negative_log_likelihood(free):
    return _negative_log_likelihood(np.concatenate([[0.0], free]), prefs, w)

  free = np.zeros(n - 1)  # r_0 = 0 fixes the shift.
  value, grad, hess = negative_log_likelihood(free)
  for _ in range(max_newton_steps):
    if np.abs(grad).max(initial=0.0) <= 1e-13 * max(1.0, np.abs(w).max()):
      break
    step = np.linalg.lstsq(hess, -grad, rcond=None)[0]
    length = 1.0  # Backtracking on the convex negative log-likelihood.
    while (negative_log_likelihood(free + length * step)[0] >
           value + 1e-4 * length * grad @ step) and length > 1e-8:
      length *= 0.5
    free = free + length * step
    value, grad, hess = negative_log_likelihood(free)
  else:
    raise RuntimeError(
        f"Bradley-Terry fit did not converge in {max_newton_steps} Newton "
        f"steps (gradient {np.abs(grad).max():.3g}); the MLE may diverge "
        "when a response wins or loses all of its comparisons")
  scores = np.concatenate([[0.0], free])
  return scores - scores.mean()


def reward_maximizing_policy(scores: np.ndarray) -> np.ndarray:
  """The unregularised RLHF optimum argmax_pi sum_y pi(y) r(y).

  Args:
    scores: r, shape (n,).

  Returns:
    The deterministic policy on argmax r (uniform over exact ties), shape (n,).
  """
  r = np.asarray(scores, dtype=np.float64)
  best = r == r.max()
  return best / best.sum()
