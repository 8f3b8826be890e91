"""Preference matrices: validation and generators.

A preference matrix P of shape (n, n) holds P[i, j] = P(y_i > y_j), the
probability that response y_i is preferred to y_j. A valid matrix has entries
in [0, 1], is antisymmetric in the paper's sense (P + P^T = 1) and therefore
has 1/2 on its diagonal. Leading batch axes (..., n, n) are allowed everywhere
(one matrix per prompt of a contextual game).
"""

from typing import Sequence

import numpy as np

ANTISYMMETRY_ATOL = 1e-12  # Tolerance on |P + P^T - 1| and the diagonal.


def as_preference_matrix(prefs: np.ndarray,
                         name: str = "P",
                         atol: float = ANTISYMMETRY_ATOL) -> np.ndarray:
  """Validates a (batch of) preference matrix(es).

  Args:
    prefs: array-like of shape (..., n, n) with prefs[..., i, j] = P(y_i > y_j).
    name: how the argument is called in error messages.
    atol: tolerance on P + P^T = 1 and on the diagonal being 1/2.

  Returns:
    The matrix as float64, shape (..., n, n).

  Raises:
    ValueError: naming the offending entry (batch index, i, j) and its value.
  """
  arr = np.asarray(prefs, dtype=np.float64)
  if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2] or arr.shape[-1] < 1:
    raise ValueError(f"{name} must have shape (..., n, n) with n >= 1; "
                     f"got shape {arr.shape}")
  if not np.all(np.isfinite(arr)):
    bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
    raise ValueError(f"{name} has a non-finite entry at index {bad}")
  outside = (arr < 0.0) | (arr > 1.0)
  if np.any(outside):
    bad = tuple(int(i) for i in np.argwhere(outside)[0])
    raise ValueError(f"{name} entries must lie in [0, 1]; {name}{list(bad)} = "
                     f"{float(arr[bad])}")
  diag = np.diagonal(arr, axis1=-2, axis2=-1)
  off_diag = np.abs(diag - 0.5) > atol
  if np.any(off_diag):
    bad = tuple(int(i) for i in np.argwhere(off_diag)[0])
    raise ValueError(f"{name} must have 1/2 on its diagonal (P(y > y) = 1/2); "
                     f"diagonal entry {bad} is {float(diag[bad])}")
  gap = np.abs(arr + np.swapaxes(arr, -1, -2) - 1.0)
  asym = gap > atol
  if np.any(asym):
    bad = tuple(int(i) for i in np.argwhere(asym)[0])
    transposed = bad[:-2] + (bad[-1], bad[-2])
    raise ValueError(
        f"{name} must satisfy P + P^T = 1 (P(y > y') = 1 - P(y' > y)); "
        f"{name}{list(bad)} + {name}{list(transposed)} = "
        f"{float(arr[bad] + arr[transposed])}")
  return arr


def random_preference_matrix(num_responses: int,
                             rng: np.random.Generator,
                             batch_shape: Sequence[int] = ()) -> np.ndarray:
  """Draws a random valid preference matrix.

  P = 1/2 + (A - A^T)/2 with A uniform on [0, 1]^(n x n), so every
  off-diagonal entry lies in [0, 1] and P + P^T = 1 exactly.

  Args:
    num_responses: n >= 1.
    rng: NumPy random generator.
    batch_shape: leading batch shape (e.g. (num_prompts,)).

  Returns:
    Array of shape (*batch_shape, n, n).
  """
  if num_responses < 1:
    raise ValueError(f"num_responses must be >= 1; got {num_responses}")
  shape = tuple(batch_shape) + (num_responses, num_responses)
  a = rng.uniform(size=shape)
  return 0.5 + 0.5 * (a - np.swapaxes(a, -1, -2))


def random_tournament_matrix(num_responses: int,
                             rng: np.random.Generator) -> np.ndarray:
  """A random tournament: every pair is decided deterministically (0 or 1).

  Args:
    num_responses: n >= 1.
    rng: NumPy random generator.

  Returns:
    Array of shape (n, n) with off-diagonal entries in {0, 1}.
  """
  if num_responses < 1:
    raise ValueError(f"num_responses must be >= 1; got {num_responses}")
  upper = np.triu(np.ones((num_responses, num_responses), dtype=bool), 1)
  wins = (rng.uniform(size=upper.shape) < 0.5).astype(np.float64)
  prefs = np.full(upper.shape, 0.5)
  prefs[upper] = wins[upper]
  prefs.T[upper] = 1.0 - wins[upper]
  return prefs


def cyclic_preference_matrix(num_responses: int,
                             margin: float = 0.5) -> np.ndarray:
  """A rock-paper-scissors-like cyclic preference matrix.

  Responses sit on a circle; each beats the floor((n-1)/2) responses that
  follow it: P[i, (i + k) mod n] = 1/2 + margin * sign(sin(2 pi k / n)).
  Every column of P - 1/2 sums to 0, so the uniform policy wins exactly 1/2
  against every response and is a Nash equilibrium of the unregularised game.
  For odd n it is the unique one (P - 1/2 has rank n - 1); for even n the
  diametrically opposite pairs tie and the equilibria form a set. n = 3 with
  margin = 1/2 is rock-paper-scissors with deterministic wins.

  Args:
    num_responses: n >= 3.
    margin: advantage of the winner of each decided pair, in (0, 1/2].

  Returns:
    Array of shape (n, n).
  """
  if num_responses < 3:
    raise ValueError("a cyclic preference needs at least 3 responses; got "
                     f"{num_responses}")
  if not 0.0 < margin <= 0.5:
    raise ValueError(f"margin must lie in (0, 1/2]; got {margin}")
  k = np.arange(num_responses)
  offsets = (k[None, :] - k[:, None]) % num_responses
  # sign(sin(2 pi d / n)) without rounding: +1 for 0 < 2d < n, -1 for 2d > n.
  signs = np.sign(num_responses - 2 * offsets) * (offsets != 0)
  return 0.5 + margin * signs


def population_preference(type_probs: np.ndarray,
                          type_prefs: np.ndarray) -> np.ndarray:
  """Preference of a population mixing several types of humans.

  P(y > y') = sum_k w_k P_k(y > y'): a randomly drawn human of type k (with
  probability w_k) prefers y to y' with probability P_k(y > y').

  Args:
    type_probs: w, shape (K,), non-negative, summing to 1.
    type_prefs: per-type preference matrices, shape (K, n, n), each valid.

  Returns:
    The population preference matrix, shape (n, n).
  """
  w = np.asarray(type_probs, dtype=np.float64)
  mats = as_preference_matrix(type_prefs, name="type_prefs")
  if w.ndim != 1 or mats.ndim != 3 or w.shape[0] != mats.shape[0]:
    raise ValueError(f"type_probs must have shape (K,) and type_prefs shape "
                     f"(K, n, n); got {w.shape} and {mats.shape}")
  if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-12:
    raise ValueError(f"type_probs must be non-negative and sum to 1; got {w}")
  return np.einsum("k,kij->ij", w, mats)


def strict_order_preference(order: Sequence[int],
                            num_responses: int) -> np.ndarray:
  """Preference of a human who strictly ranks some responses, ties elsewhere.

  Args:
    order: response indices from most to least preferred. Pairs of listed
      responses are decided deterministically; any pair involving an unlisted
      response is a tie (1/2).
    num_responses: n.

  Returns:
    Array of shape (n, n) with entries in {0, 1/2, 1}.
  """
  if len(set(order)) != len(order) or any(
      not 0 <= o < num_responses for o in order):
    raise ValueError(f"order must list distinct indices in [0, "
                     f"{num_responses}); got {list(order)}")
  prefs = np.full((num_responses, num_responses), 0.5)
  for rank, winner in enumerate(order):
    for loser in order[rank + 1:]:
      prefs[winner, loser] = 1.0
      prefs[loser, winner] = 0.0
  return prefs
