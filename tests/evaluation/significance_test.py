"""Tests for the pairwise significance tests against closed forms."""

import math

import numpy as np
import pytest

from nlhf_jax.evaluation import report
from nlhf_jax.evaluation import significance
from nlhf_jax.evaluation import tournament


def test_t_test_closed_form_two_degrees_of_freedom():
  # mean 0.7, s = 0.1, n = 3: t = 0.2 / (0.1 / √3); for 2 degrees of
  # freedom P(T ≥ t) = ½ (1 − t / √(t² + 2)), so p = 1 − t / √(t² + 2).
  t, p = significance.t_test_half(np.array([0.6, 0.7, 0.8]))
  expected_t = 0.2 / (0.1 / math.sqrt(3))
  assert t == pytest.approx(expected_t)
  assert p == pytest.approx(1 - expected_t / math.sqrt(expected_t**2 + 2))
  t_low, p_low = significance.t_test_half(np.array([0.4, 0.3, 0.2]))
  assert (t_low, p_low) == pytest.approx((-expected_t, p))


def test_t_test_degenerate_cases():
  assert significance.t_test_half(np.full(5, 0.5)) == (0.0, 1.0)
  assert significance.t_test_half(np.full(5, 0.9)) == (math.inf, 0.0)
  with pytest.raises(ValueError, match=">= 2 prompts"):
    significance.t_test_half(np.array([0.7]))


def test_holm_by_hand():
  # Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 →
  # running maximum 0.02, 0.03, 0.06, 0.06.
  np.testing.assert_allclose(significance.holm([0.01, 0.04, 0.03, 0.005]),
                             [0.03, 0.06, 0.06, 0.02])
  np.testing.assert_allclose(significance.holm([0.5, 0.9]), [1.0, 1.0])


PREFS = {"good": 0.3, "fair": 0.0, "poor": -0.1}


def _judge(prompts, first, second):
  """P(first ≻ second): ½ + a score gap ± a prompt-dependent 0.05."""
  return [min(max(0.5 + PREFS[a.split()[0]] - PREFS[b.split()[0]]
                  + 0.05 * math.sin(len(x) + i), 0.0), 1.0)
          for i, (x, a, b) in enumerate(zip(prompts, first, second))]


def _result():
  prompts = [f"prompt {'x' * i}" for i in range(40)]
  summaries = {name: [f"{name} {i}" for i in range(40)] for name in PREFS}
  return tournament.run_tournament(prompts, summaries, _judge,
                                   average_orders=False)


def test_pairwise_tests_find_the_clear_gaps():
  tests = {(t.row, t.column): t
           for t in significance.pairwise_tests(_result())}
  assert set(tests) == {("good", "fair"), ("good", "poor"), ("fair", "poor")}
  gap = tests[("good", "poor")]
  assert gap.significant and (gap.winner, gap.loser) == ("good", "poor")
  assert gap.win_rate == pytest.approx(0.5 - 0.4, abs=0.02)
  assert gap.adjusted_p_value >= gap.p_value
  assert all(t.num_prompts == 40 for t in tests.values())
  with pytest.raises(ValueError, match="alpha"):
    significance.pairwise_tests(_result(), alpha=1.5)


def test_report_lists_significant_pairs(tmp_path):
  files = report.write_report(tmp_path, _result())
  text = open(files.report).read()
  assert "## Which differences are significant" in text
  assert "good ≻ poor" in text
  rows = open(files.tests_csv).read().splitlines()
  assert rows[0].startswith("row,column,win_rate")
  assert len(rows) == 4
