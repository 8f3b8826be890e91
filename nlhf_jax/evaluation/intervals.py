"""Win rates with Clopper–Pearson confidence intervals.

The paper (Munos et al. 2024, §8 and App. G.6) reports each cell of its
P*(column ≻ row) tables on 2000 comparisons with a 95% Clopper–Pearson
interval (at most ±0.023). A judge here returns a *probability*
p_i = P(y_c ≻ y_r | x_i) per comparison, not a hard label, so we must say
what "k wins out of n" means. The estimand is the policies' win rate

  P(π_c ≻ π_r) = E_{x, y_c ~ π_c, y_r ~ π_r} [P(y_c ≻ y_r | x)],

and every method below reports the unbiased point estimate p̄ = mean(p_i).
The interval is one of:

* ``"fractional"`` (default): Clopper–Pearson with the real-valued win count
  s = Σ p_i (the Beta quantiles accept non-integer shapes):
  [B⁻¹(α/2; s, n − s + 1), B⁻¹(1 − α/2; s + 1, n − s)], with 0 / 1 at
  s = 0 / s = n. With hard 0/1 judgements (an LLM's argmax, a sampled human
  label) this *is* the exact Clopper–Pearson interval. With soft judgements
  the p_i are i.i.d. with mean p and Var(p_i) = E[p_i²] − p² ≤ p − p², i.e.
  never more dispersed than the Bernoulli outcomes the interval is built for,
  so the interval is conservative: as wide as the paper's hard-label
  intervals, wider than the soft p̄ needs. (Simulated in
  tests/evaluation/intervals_test.py: with Var(p_i) = p(1 − p)/3 it covered p
  in 400 of 400 runs; with hard labels in 94–96%.) It always contains p̄.
* ``"sampled"``: draw one Bernoulli outcome b_i ~ Bernoulli(p_i) per
  comparison from a seeded generator and take the exact Clopper–Pearson
  interval of k = Σ b_i. The b_i are i.i.d. Bernoulli(P(π_c ≻ π_r)), so the
  nominal coverage is a theorem, at the price of extra sampling noise; the
  interval is centred on k / n, not on p̄.

Both methods also record k (the seeded Bernoulli draw count) so tables can
show a "wins out of n" figure. Pure numpy/scipy.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from scipy import special

METHODS = ("fractional", "sampled")


@dataclasses.dataclass(frozen=True)
class WinRate:
  """One cell of a tournament: how often the column policy beats the row.

  Attributes:
    win_rate: point estimate p̄ = mean_i P(column ≻ row | x_i).
    ci_low: lower end of the confidence interval.
    ci_high: upper end of the confidence interval.
    num_samples: n, the number of comparisons.
    sampled_wins: k = Σ_i b_i with b_i ~ Bernoulli(p_i) (seeded draws).
    confidence: the interval's nominal coverage, e.g. 0.95.
    method: how the interval was built, one of `METHODS`.
  """
  win_rate: float
  ci_low: float
  ci_high: float
  num_samples: int
  sampled_wins: int
  confidence: float
  method: str

  def flipped(self) -> WinRate:
    """The same comparison read from the other side: P(row ≻ column).

    Uses Beta symmetry (1 − X ~ Beta(b, a) for X ~ Beta(a, b)): the interval
    of 1 − p is [1 − high, 1 − low] for both methods. In IEEE double
    arithmetic with round-to-nearest-even, p + fl(1 − p) == 1 exactly for
    every p in [0, 1], so a cell and its flip sum to 1 bit-for-bit.
    """
    return dataclasses.replace(
        self, win_rate=1.0 - self.win_rate, ci_low=1.0 - self.ci_high,
        ci_high=1.0 - self.ci_low,
        sampled_wins=self.num_samples - self.sampled_wins)

  def half_width(self) -> float:
    """Largest distance from the point estimate to an interval end."""
    return max(self.win_rate - self.ci_low, self.ci_high - self.win_rate)


def clopper_pearson(wins: np.ndarray | float, num_samples: np.ndarray | int,
                    confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
  """Clopper–Pearson interval for a binomial proportion (vectorized).

  With α = 1 − confidence:
    low  = B⁻¹(α/2;     k,     n − k + 1)   (0 when k = 0),
    high = B⁻¹(1 − α/2; k + 1, n − k)       (1 when k = n),
  where B⁻¹(q; a, b) is the Beta(a, b) quantile. k may be real-valued (the
  "fractional" method of this module).

  Args:
    wins: k, array [...] (or scalar) with 0 ≤ k ≤ n.
    num_samples: n ≥ 1, broadcastable against `wins`.
    confidence: nominal coverage in (0, 1).

  Returns:
    (low, high): float64 arrays of the broadcast shape.

  Raises:
    ValueError: if confidence is not in (0, 1), n < 1 or k is outside [0, n]
      (the first offending index is named).
  """
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  k, n = np.broadcast_arrays(np.asarray(wins, dtype=np.float64),
                             np.asarray(num_samples, dtype=np.float64))
  bad_n = ~(n >= 1)
  if bad_n.any():
    index = tuple(int(i) for i in np.argwhere(bad_n)[0])
    raise ValueError(f"num_samples must be >= 1; got {n[index]} at {index}")
  bad_k = ~((k >= 0) & (k <= n))
  if bad_k.any():
    index = tuple(int(i) for i in np.argwhere(bad_k)[0])
    raise ValueError(f"wins must be in [0, num_samples]; got {k[index]} of "
                     f"{n[index]} at index {index}")
  alpha = 1.0 - confidence
  with np.errstate(invalid="ignore", divide="ignore"):
    # betaincinv(a, b, q) is the Beta(a, b) quantile (scipy.stats.beta.ppf
    # without its argument-checking overhead); a or b = 0 gives NaN,
    # replaced just below.
    low = special.betaincinv(k, n - k + 1, alpha / 2)
    high = special.betaincinv(k + 1, n - k, 1 - alpha / 2)
  low = np.where(k <= 0, 0.0, low)
  high = np.where(k >= n, 1.0, high)
  return np.asarray(low, np.float64), np.asarray(high, np.float64)


def check_probabilities(probs: Sequence[float] | np.ndarray,
                        what: str = "probabilities") -> np.ndarray:
  """Validates a 1-D array of probabilities.

  Args:
    probs: values expected in [0, 1].
    what: name used in error messages.

  Returns:
    float64 [n] copy.

  Raises:
    ValueError: if not 1-D, empty, non-finite or outside [0, 1] (the first
      offending index and value are named).
  """
  p = np.asarray(probs, dtype=np.float64)
  if p.ndim != 1:
    raise ValueError(f"{what} must be 1-D, got shape {p.shape}")
  if p.size == 0:
    raise ValueError(f"{what} is empty: a win rate needs >= 1 comparison")
  bad = ~((p >= 0.0) & (p <= 1.0))  # Also catches NaN.
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f"{what}[{i}] = {float(p[i])!r} is not a probability in "
                     f"[0, 1] ({int(bad.sum())} bad values)")
  return p


def win_rate_interval(probs: Sequence[float] | np.ndarray, *,
                      confidence: float = 0.95, method: str = "fractional",
                      seed: int | Sequence[int] = 0) -> WinRate:
  """Win rate of "column" over "row" from per-comparison probabilities.

  Args:
    probs: p_i = P(column ≻ row | x_i), float [n] in [0, 1]; hard 0/1
      judgements are allowed.
    confidence: nominal coverage of the interval.
    method: "fractional" (Clopper–Pearson on s = Σ p_i) or "sampled"
      (Clopper–Pearson on k = Σ Bernoulli(p_i) draws); see the module doc.
    seed: seed (or seed sequence) of the Bernoulli draws.

  Returns:
    The `WinRate` with win_rate = mean(p_i).

  Raises:
    ValueError: for an unknown method or bad probabilities.
  """
  if method not in METHODS:
    raise ValueError(f"unknown interval method {method!r}; known: {METHODS}")
  p = check_probabilities(probs)
  n = p.size
  rng = np.random.default_rng(seed)
  sampled = int(np.sum(rng.random(n) < p))
  count = float(np.sum(p)) if method == "fractional" else float(sampled)
  count = min(max(count, 0.0), float(n))  # Guard summation round-off.
  low, high = clopper_pearson(count, n, confidence)
  mean = float(np.mean(p))
  low, high = float(low), float(high)
  if method == "fractional":  # Round-off must not push p̄ outside.
    low, high = min(low, mean), max(high, mean)
  return WinRate(win_rate=mean, ci_low=low, ci_high=high, num_samples=n,
                 sampled_wins=sampled, confidence=confidence, method=method)
