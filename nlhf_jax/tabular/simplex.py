"""Probability vectors on the simplex, handled in log space.

Policies are arrays of shape (..., n): the last axis indexes the n responses,
leading axes are batch axes (prompts of a contextual game, time steps of a
trajectory). Everything is float64. Log-space helpers never exponentiate
before normalising, so iterates with entries far below 1e-300 stay exact.
"""

from typing import Optional

import numpy as np

SUM_ATOL = 1e-9  # How far from 1 a policy's total mass may be.


def as_policy(pi: np.ndarray,
              name: str = "policy",
              num_responses: Optional[int] = None,
              strictly_positive: bool = False) -> np.ndarray:
  """Checks that `pi` is a (batch of) probability vector(s).

  Args:
    pi: array-like of shape (..., n), each row summing to 1.
    name: how the argument is called in error messages.
    num_responses: expected n, or None for any n >= 1.
    strictly_positive: also require every entry > 0 (needed wherever a log or
      a KL to this distribution is taken, e.g. for the reference policy mu).

  Returns:
    The policy as a float64 array of shape (..., n).

  Raises:
    ValueError: naming the first offending entry or row.
  """
  arr = np.asarray(pi, dtype=np.float64)
  if arr.ndim < 1 or arr.shape[-1] < 1:
    raise ValueError(f"{name} must have shape (..., n) with n >= 1; "
                     f"got shape {arr.shape}")
  if num_responses is not None and arr.shape[-1] != num_responses:
    raise ValueError(f"{name} has {arr.shape[-1]} responses on its last axis "
                     f"but {num_responses} were expected (shape {arr.shape})")
  if not np.all(np.isfinite(arr)):
    bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
    raise ValueError(f"{name} has a non-finite entry at index {bad}")
  offending = arr <= 0 if strictly_positive else arr < 0
  if np.any(offending):
    bad = tuple(int(i) for i in np.argwhere(offending)[0])
    need = "> 0" if strictly_positive else ">= 0"
    raise ValueError(f"{name} entries must be {need}; entry {bad} is "
                     f"{float(arr[bad])}")
  sums = arr.sum(axis=-1)
  off = np.abs(sums - 1.0) > SUM_ATOL
  if np.any(off):
    row = tuple(int(i) for i in np.argwhere(np.atleast_1d(off))[0])
    total = np.atleast_1d(sums)[row]
    raise ValueError(f"{name} must sum to 1 over its last axis; row {row} "
                     f"sums to {float(total)}")
  return arr


def log_normalize(logits: np.ndarray) -> np.ndarray:
  """Returns log softmax(logits) along the last axis, shape (..., n)."""
  logits = np.asarray(logits, dtype=np.float64)
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
  """Returns softmax(logits) along the last axis, shape (..., n)."""
  return np.exp(log_normalize(logits))


def safe_log(pi: np.ndarray) -> np.ndarray:
  """Elementwise log with log(0) = -inf and no warning."""
  with np.errstate(divide="ignore"):
    return np.log(np.asarray(pi, dtype=np.float64))


def kl_from_logs(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
  """KL(p, q) = sum_y p(y) (log p(y) - log q(y)) from log-probabilities.

  Terms with p(y) = 0 (log_p = -inf) contribute 0; terms with p(y) > 0 and
  q(y) = 0 make the result +inf.

  Args:
    log_p: log-probabilities, shape (..., n).
    log_q: log-probabilities, broadcastable to log_p.

  Returns:
    KL divergences in nats, shape (...) (broadcast of the leading axes).
  """
  log_p, log_q = np.broadcast_arrays(np.asarray(log_p, np.float64),
                                     np.asarray(log_q, np.float64))
  p = np.exp(log_p)
  support = p > 0
  with np.errstate(invalid="ignore"):
    terms = np.where(support, p * (log_p - log_q), 0.0)
  return np.maximum(terms.sum(axis=-1), 0.0)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
  """KL(p, q) in nats for probability vectors of shape (..., n).

  Args:
    p: probabilities, shape (..., n).
    q: probabilities, broadcastable to p.

  Returns:
    sum_y p(y) log(p(y)/q(y)), shape (...); +inf where q misses p's support.
  """
  return kl_from_logs(safe_log(p), safe_log(q))


def geometric_mixture_logits(log_pi: np.ndarray, log_mu: np.ndarray,
                             weight: np.ndarray) -> np.ndarray:
  """Normalised geometric mixture pi^(1-w) mu^w / Z, in log space.

  Args:
    log_pi: log-probabilities of pi, shape (..., n), finite.
    log_mu: log-probabilities of mu, broadcastable to log_pi, finite.
    weight: mixing weight w in [0, 1] (scalar or shape (...,)).

  Returns:
    log of the normalised mixture, shape (..., n).
  """
  if np.ndim(weight) == 0:
    w = float(weight)
    if w == 0.0:  # Exact, and avoids 0 * (-inf) when mu has zeros.
      return log_normalize(log_pi)
  else:
    w = np.asarray(weight, dtype=np.float64)[..., None]
  return log_normalize((1.0 - w) * log_pi + w * log_mu)
