"""Tests of the Clopper–Pearson intervals, including simulated coverage."""

import numpy as np
import pytest
from scipy import stats

from nlhf_jax.evaluation import intervals
from nlhf_jax.evaluation import tournament

_COVERAGE_PS = (0.3, 0.5, 0.62)
_N = 200
_REPS = 400


def test_clopper_pearson_closed_forms():
  # k = 0: high solves (1 − p)^n = α/2. k = n: low solves p^n = α/2.
  # k = 1: low solves 1 − (1 − p)^n = α/2.
  n = 10
  low, high = intervals.clopper_pearson(np.array([0, n, 1]), n)
  assert low[0] == 0.0 and high[1] == 1.0
  np.testing.assert_allclose(high[0], 1 - 0.025 ** (1 / n), rtol=1e-12)
  np.testing.assert_allclose(low[1], 0.025 ** (1 / n), rtol=1e-12)
  np.testing.assert_allclose(low[2], 1 - 0.975 ** (1 / n), rtol=1e-12)


@pytest.mark.parametrize("k,n", [(3, 17), (50, 100), (1234, 2000), (1, 2)])
def test_clopper_pearson_solves_the_binomial_tail_equations(k, n):
  # Definition: P(Bin(n, low) >= k) = α/2 and P(Bin(n, high) <= k) = α/2.
  low, high = intervals.clopper_pearson(k, n, confidence=0.9)
  np.testing.assert_allclose(stats.binom.sf(k - 1, n, low), 0.05, rtol=1e-9)
  np.testing.assert_allclose(stats.binom.cdf(k, n, high), 0.05, rtol=1e-9)
  # Same numbers as scipy's Beta quantiles and its binomtest interval.
  np.testing.assert_allclose(
      [low, high], [stats.beta.ppf(0.05, k, n - k + 1),
                    stats.beta.ppf(0.95, k + 1, n - k)], rtol=1e-12)
  ci = stats.binomtest(k, n).proportion_ci(0.9, method="exact")
  np.testing.assert_allclose([low, high], [ci.low, ci.high], rtol=1e-9)


def test_half_widths_match_the_paper():
  # App. G.6: at most ±0.023 on 2000 comparisons, ±0.032 on 1000.
  for n, bound in ((2000, 0.023), (1000, 0.032)):
    cell = intervals.win_rate_interval(np.full(n, 0.5))
    assert cell.half_width() <= bound
    assert cell.half_width() > bound - 0.003


def test_fractional_interval_reduces_to_exact_one_for_hard_labels():
  labels = np.array([1.0] * 13 + [0.0] * 27)
  cell = intervals.win_rate_interval(labels)
  low, high = intervals.clopper_pearson(13, 40)
  assert (cell.ci_low, cell.ci_high) == (float(low), float(high))
  assert cell.win_rate == 13 / 40 and cell.sampled_wins == 13
  sampled = intervals.win_rate_interval(labels, method="sampled", seed=5)
  assert (sampled.ci_low, sampled.ci_high) == (cell.ci_low, cell.ci_high)


def test_flipped_mirrors_the_cell():
  p = np.random.default_rng(3).random(37)
  for method in intervals.METHODS:
    cell = intervals.win_rate_interval(p, method=method, seed=1)
    flip = cell.flipped()
    assert cell.win_rate + flip.win_rate == 1.0
    assert cell.sampled_wins + flip.sampled_wins == 37
    assert flip.ci_low == 1.0 - cell.ci_high
  # Beta symmetry: the flipped interval is the one computed from 1 − p.
  flip = intervals.win_rate_interval(p).flipped()
  direct = intervals.win_rate_interval(1.0 - p)
  np.testing.assert_allclose(
      [flip.win_rate, flip.ci_low, flip.ci_high],
      [direct.win_rate, direct.ci_low, direct.ci_high], rtol=0, atol=1e-12)


def test_sampled_wins_are_seeded():
  p = np.random.default_rng(0).random(100)
  a = intervals.win_rate_interval(p, method="sampled", seed=[4, 2])
  b = intervals.win_rate_interval(p, method="sampled", seed=[4, 2])
  assert a == b
  draws = [intervals.win_rate_interval(p, seed=s).sampled_wins
           for s in range(30)]
  assert len(set(draws)) > 1


def test_interval_input_errors():
  with pytest.raises(ValueError, match=r"probabilities\[2\] = 1.5"):
    intervals.win_rate_interval([0.1, 0.2, 1.5])
  with pytest.raises(ValueError, match="empty"):
    intervals.win_rate_interval([])
  with pytest.raises(ValueError, match="unknown interval method"):
    intervals.win_rate_interval([0.5], method="wald")
  with pytest.raises(ValueError, match=r"wins must be in \[0, num_samples\]"):
    intervals.clopper_pearson(11, 10)
  with pytest.raises(ValueError, match="confidence"):
    intervals.clopper_pearson(1, 10, confidence=1.0)


def _prompt_judge(prompts, first, second):
  """Simulated judge: prompt i carries q_i = P(B ≻ A | x_i) as text."""
  q = np.array([float(x) for x in prompts])
  return np.where(np.array(first) == "B", q, 1.0 - q)


def _coverage_of_tournaments(p: float, rng: np.random.Generator) -> float:
  """Fraction of tournaments A vs B (true P(B ≻ A) = p) whose CI covers p.

  The judge gives hard 0/1 outcomes, so every cell is a Binomial(n, p)
  proportion: Clopper–Pearson's setting.
  """
  summaries = {"A": ["A"] * _N, "B": ["B"] * _N}
  covered = 0
  for rep in range(_REPS):
    q = (rng.random(_N) < p).astype(float)
    result = tournament.run_tournament([repr(float(x)) for x in q], summaries,
                                       _prompt_judge, seed=rep)
    cell = result.cell("A", "B")
    covered += cell.ci_low <= p <= cell.ci_high
  return covered / _REPS


@pytest.mark.parametrize("p", _COVERAGE_PS)
def test_tournament_intervals_cover_true_win_probability(p):
  coverage = _coverage_of_tournaments(p, np.random.default_rng(int(p * 100)))
  print(f"hard judge, p={p}, n={_N}: coverage {coverage:.4f}")
  assert coverage >= 0.93, f"coverage {coverage} at p={p}"


@pytest.mark.parametrize("method", intervals.METHODS)
def test_soft_judge_intervals_cover_true_win_probability(method):
  # Soft judgements q_i ~ Beta(2p, 2(1 − p)): mean p, Var = p(1 − p)/3.
  rng = np.random.default_rng(7)
  for p in _COVERAGE_PS:
    covered = 0
    for rep in range(_REPS):
      q = rng.beta(2 * p, 2 * (1 - p), size=_N)
      cell = intervals.win_rate_interval(q, method=method, seed=rep)
      covered += cell.ci_low <= p <= cell.ci_high
    coverage = covered / _REPS
    print(f"soft judge, {method}, p={p}, n={_N}: coverage {coverage:.4f}")
    assert coverage >= 0.93, f"{method}: coverage {coverage} at p={p}"
