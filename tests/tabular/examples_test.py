"""The paper's worked examples (reference/paper.md §2) give its numbers."""

import numpy as np
import pytest

from nlhf_jax.tabular import bradley_terry
from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import examples
from nlhf_jax.tabular import games


@pytest.mark.parametrize("eps", [0.03, 0.1, -0.1, 0.01, -0.01, 0.25])
def test_three_type_population_matches_the_paper_formulas(eps):
  prefs = games.as_preference_matrix(examples.three_type_population(eps))
  assert prefs[1, 0] == pytest.approx(2 / 3 - eps / 2, abs=1e-15)
  assert prefs[2, 1] == pytest.approx(2 / 3 + eps / 4, abs=1e-15)
  assert prefs[0, 2] == pytest.approx(2 / 3 + eps / 4, abs=1e-15)


@pytest.mark.parametrize("eps", [0.03, 0.1, -0.1, 0.01, -0.01, 0.0])
def test_three_type_nash_is_the_closed_form(eps):
  prefs = examples.three_type_population(eps)
  pi, value = equilibrium.solve_nash_lp(prefs)
  closed_form = [1 / 3 + eps / 2, 1 / 3 + eps / 2, 1 / 3 - eps]
  np.testing.assert_allclose(pi, closed_form, atol=1e-14)
  np.testing.assert_allclose(pi, examples.three_type_nash(eps), atol=1e-14)
  assert value == pytest.approx(0.5, abs=1e-14)
  # Every action wins exactly 1/2 against the equilibrium.
  np.testing.assert_allclose(prefs @ pi, 0.5, atol=1e-14)


def test_three_type_nash_numbers_quoted_in_the_paper():
  np.testing.assert_allclose(
      equilibrium.solve_nash_lp(examples.three_type_population(0.03))[0],
      [0.348, 0.348, 0.303], atol=5e-4)
  np.testing.assert_allclose(
      equilibrium.solve_nash_lp(examples.three_type_population(0.1))[0],
      [0.383, 0.383, 0.233], atol=5e-4)


@pytest.mark.parametrize("eps, winner", [(0.01, 0), (0.1, 0), (0.03, 0),
                                         (-0.01, 1), (-0.1, 1), (-0.03, 1)])
def test_bradley_terry_optimum_is_deterministic_and_flips_with_eps(
    eps, winner):
  prefs = examples.three_type_population(eps)
  scores = bradley_terry.fit_bradley_terry(prefs)
  policy = bradley_terry.reward_maximizing_policy(scores)
  np.testing.assert_array_equal(policy, np.eye(3)[winner])
  # Meanwhile the Nash equilibrium stays within |eps| of uniform.
  nash, _ = equilibrium.solve_nash_lp(prefs)
  assert np.abs(nash - 1 / 3).max() == pytest.approx(abs(eps), abs=1e-14)


def test_bradley_terry_fit_recovers_exact_scores():
  scores = np.array([0.3, -1.2, 2.0, 0.0])
  fitted = bradley_terry.fit_bradley_terry(
      bradley_terry.bradley_terry_matrix(scores))
  np.testing.assert_allclose(fitted, scores - scores.mean(), atol=1e-12)


def test_elo_example_reproduces_50_over_99():
  ex = examples.elo_example()
  games.as_preference_matrix(ex.prefs)
  assert ex.prefs[2, 0] == pytest.approx(2 / 3, abs=1e-15)
  assert ex.prefs[2, 1] == pytest.approx(2 / 11, abs=1e-15)
  np.testing.assert_allclose(ex.elo_max, [2 / 3, 1 / 3, 0.0], atol=1e-15)
  np.testing.assert_allclose(ex.preference_max, [0.0, 0.0, 1.0], atol=1e-14)
  assert ex.preference_max_wins == pytest.approx(50 / 99, abs=1e-14)
  # Expected Elo: (1/3) log 9 > log 2, yet the lower-Elo policy wins.
  assert ex.elo_max @ ex.scores == pytest.approx(np.log(9) / 3, abs=1e-15)
  assert ex.preference_max @ ex.scores == pytest.approx(np.log(2), abs=1e-15)
  assert ex.elo_max @ ex.scores > ex.preference_max @ ex.scores


def test_elo_example_unrestricted_both_pick_y2():
  ex = examples.elo_example()
  nash, _ = equilibrium.solve_nash_lp(ex.prefs)
  np.testing.assert_allclose(nash, [0.0, 1.0, 0.0], atol=1e-14)
  assert np.argmax(ex.scores) == 1


def test_nontransitive_dice():
  prefs = examples.dice_preference_matrix(examples.NONTRANSITIVE_DICE)
  games.as_preference_matrix(prefs)
  for a in range(3):  # Each die beats the next with probability 5/9.
    assert prefs[a, (a + 1) % 3] == pytest.approx(5 / 9, abs=1e-15)
  nash, value = equilibrium.solve_nash_lp(prefs)
  np.testing.assert_allclose(nash, np.full(3, 1 / 3), atol=1e-15)
  assert value == pytest.approx(0.5, abs=1e-15)
  np.testing.assert_allclose(prefs @ nash, 0.5, atol=1e-15)
  # No scalar reward represents the cycle: the best Bradley-Terry fit is flat
  # and mispredicts every pair by 5/9 - 1/2 = 1/18.
  scores = bradley_terry.fit_bradley_terry(prefs)
  np.testing.assert_allclose(scores, 0.0, atol=1e-14)
  fitted = bradley_terry.bradley_terry_matrix(scores)
  np.testing.assert_allclose(np.abs(fitted - prefs)[~np.eye(3, dtype=bool)],
                             1 / 18, atol=1e-15)


def test_dice_with_ties_and_bad_input():
  prefs = examples.dice_preference_matrix([[1, 2], [2, 3]])
  assert prefs[0, 1] == pytest.approx((0 + 0 + 0.5 + 0) / 4)
  with pytest.raises(ValueError, match="non-empty"):
    examples.dice_preference_matrix([[1, 2], []])
  with pytest.raises(ValueError, match=r"\|eps\| <= 1/3"):
    examples.three_type_population(0.5)
