"""Which pairwise win rates of a tournament differ from ½, corrected for
multiple comparisons.

For a pair (a, b) the tournament holds one judged probability per prompt,
q_i = P(y_{b,i} ≻ y_{a,i} | x_i), i = 1..n, responses sampled independently
per prompt. The test of H0: E[q] = ½ is the one-sample t-test on q:

  t = (q̄ − ½) / (s / √n),   s² = Σ (q_i − q̄)² / (n − 1),
  p = 2 · P(T_{n−1} ≥ |t|)   (Student's t with n − 1 degrees of freedom).

Prompts are the sampling unit, so the test accounts for both the judge's
noise and the policies' sampling noise. With P policies there are
m = P(P − 1)/2 such tests; Holm's step-down procedure controls the
family-wise error rate at α: sort the p-values p_(1) ≤ … ≤ p_(m), reject
while p_(k) ≤ α / (m − k + 1), and stop at the first that is not. The
adjusted p-value reported is max_{j ≤ k} min(1, (m − j + 1) p_(j)).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

from nlhf_jax.evaluation import tournament as tournament_lib


@dataclasses.dataclass(frozen=True)
class PairTest:
  """The test of one pair.

  Attributes:
    row: the first policy of the pair (its order in the tournament).
    column: the second.
    win_rate: mean over prompts of P(column ≻ row).
    num_prompts: n.
    t: the t statistic (±inf when every q_i is equal and ≠ ½).
    p_value: two-sided, unadjusted.
    adjusted_p_value: Holm-adjusted over the tournament's pairs.
    significant: adjusted_p_value ≤ α.
  """

  row: str
  column: str
  win_rate: float
  num_prompts: int
  t: float
  p_value: float
  adjusted_p_value: float
  significant: bool

  @property
  def winner(self) -> str:
    """The policy the mean favours (the column on a tie)."""
    return self.column if self.win_rate >= 0.5 else self.row

  @property
  def loser(self) -> str:
    return self.row if self.win_rate >= 0.5 else self.column


def t_test_half(values: np.ndarray) -> tuple[float, float]:
  """(t, two-sided p) of H0: mean(values) = ½ (module docstring); NaNs
  (comparisons a judge left unanswered) are left out."""
  values = np.asarray(values, np.float64)
  values = values[~np.isnan(values)]
  n = values.size
  if n < 2:
    raise ValueError(f"A t-test needs >= 2 prompts, got {n}.")
  gap = float(values.mean()) - 0.5
  spread = float(values.std(ddof=1))
  if spread == 0.0:
    return (0.0, 1.0) if gap == 0.0 else (math.copysign(math.inf, gap), 0.0)
  t = gap / (spread / math.sqrt(n))
  return t, float(2.0 * scipy_stats.t.sf(abs(t), df=n - 1))


def holm(p_values: Sequence[float]) -> np.ndarray:
  """Holm-adjusted p-values, in the input's order (module docstring)."""
  p = np.asarray(p_values, np.float64)
  m = p.size
  order = np.argsort(p, kind="stable")
  scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
  adjusted = np.empty(m)
  adjusted[order] = np.maximum.accumulate(scaled)
  return adjusted


def pairwise_tests(result: tournament_lib.TournamentResult,
                   alpha: float = 0.05) -> list[PairTest]:
  """One `PairTest` per judged pair, Holm-corrected at level `alpha`."""
  if not 0.0 < alpha < 1.0:
    raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
  pairs = list(result.comparisons.items())
  raw = [t_test_half(values) for _, values in pairs]
  adjusted = holm([p for _, p in raw]) if raw else np.zeros(0)
  return [PairTest(row=row, column=column,
                   win_rate=float(np.nanmean(values)),
                   num_prompts=int(np.sum(~np.isnan(values))), t=t, p_value=p,
                   adjusted_p_value=float(adj), significant=bool(adj <= alpha))
          for ((row, column), values), (t, p), adj
          in zip(pairs, raw, adjusted)]


def markdown(tests: Sequence[PairTest], alpha: float = 0.05) -> str:
  """The significant pairs as a sentence list, then every pair's test."""
  if not tests:
    return "No pairs were judged.\n"
  found = [t for t in tests if t.significant]
  lines = [f"Significant at family-wise α = {alpha} (Holm over "
           f"{len(tests)} pairs, one-sample t-test on the per-prompt "
           "probabilities against ½): " + (
               "; ".join(f"{t.winner} ≻ {t.loser} "
                         f"({max(t.win_rate, 1 - t.win_rate):.3f})"
                         for t in found) if found else "none") + ".", "",
           "| pair | P(second ≻ first) | t | p | Holm p |",
           "|---|---|---|---|---|"]
  for t in tests:
    lines.append(f"| {t.row} vs {t.column} | {t.win_rate:.3f} | {t.t:.2f} | "
                 f"{t.p_value:.2g} | {t.adjusted_p_value:.2g}"
                 f"{' *' if t.significant else ''} |")
  return "\n".join(lines) + "\n"
