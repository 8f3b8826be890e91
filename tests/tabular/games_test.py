"""Tests for preference-matrix validation and generators."""

import numpy as np
import pytest

from nlhf_jax.tabular import games
from nlhf_jax.tabular import simplex


def test_random_matrices_are_valid_with_batch_axes():
  rng = np.random.default_rng(0)
  prefs = games.random_preference_matrix(7, rng, batch_shape=(4,))
  assert prefs.shape == (4, 7, 7)
  checked = games.as_preference_matrix(prefs)
  np.testing.assert_array_equal(checked + np.swapaxes(checked, -1, -2),
                                np.ones((4, 7, 7)))
  assert prefs.min() >= 0 and prefs.max() <= 1


@pytest.mark.parametrize("n", [3, 4, 5, 8])
def test_cyclic_matrix_is_valid_and_uniform_wins_half(n):
  prefs = games.as_preference_matrix(games.cyclic_preference_matrix(n))
  uniform = np.full(n, 1.0 / n)
  np.testing.assert_allclose(prefs @ uniform, 0.5, atol=1e-15)
  # Each response beats the next one on the circle.
  assert all(prefs[i, (i + 1) % n] > 0.5 for i in range(n))


def test_rock_paper_scissors():
  prefs = games.cyclic_preference_matrix(3, margin=0.5)
  np.testing.assert_allclose(
      prefs, [[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]], atol=1e-15)


@pytest.mark.parametrize(
    "matrix, message",
    [
        ([[0.5, 1.2], [-0.2, 0.5]], r"\[0, 1\]; P\[0, 1\] = 1.2"),
        ([[0.5, 0.7], [0.4, 0.5]], r"P \+ P\^T = 1.*P\[0, 1\] \+ P\[1, 0\]"),
        ([[0.4, 0.5], [0.5, 0.6]], r"1/2 on its diagonal"),
        ([[0.5, 0.5, 0.5]], r"shape \(\.\.\., n, n\)"),
        ([[0.5, np.nan], [np.nan, 0.5]], r"non-finite entry at index \(0, 1\)"),
    ])
def test_invalid_matrices_are_rejected_with_location(matrix, message):
  with pytest.raises(ValueError, match=message):
    games.as_preference_matrix(matrix)


def test_batch_error_names_the_batch_index():
  rng = np.random.default_rng(1)
  prefs = games.random_preference_matrix(3, rng, batch_shape=(3,))
  prefs[2, 0, 1] += 0.1
  with pytest.raises(ValueError, match=r"P\[2, 0, 1\]"):
    games.as_preference_matrix(prefs)


def test_population_of_strict_orders_averages_preferences():
  types = np.stack([games.strict_order_preference([0, 1, 2], 3),
                    games.strict_order_preference([2, 1, 0], 3)])
  prefs = games.population_preference(np.array([0.25, 0.75]), types)
  assert prefs[0, 1] == pytest.approx(0.25)
  assert prefs[2, 0] == pytest.approx(0.75)
  games.as_preference_matrix(prefs)


def test_strict_order_leaves_unlisted_pairs_tied():
  prefs = games.strict_order_preference([2, 0], 4)
  assert prefs[2, 0] == 1.0 and prefs[0, 2] == 0.0
  assert prefs[1, 3] == 0.5 and prefs[1, 0] == 0.5
  with pytest.raises(ValueError, match="distinct indices"):
    games.strict_order_preference([1, 1], 3)


def test_policy_validation_messages():
  with pytest.raises(ValueError, match=r"sum to 1.*row \(1,\)"):
    simplex.as_policy([[0.5, 0.5], [0.5, 0.6]], "pi")
  with pytest.raises(ValueError, match=r"must be > 0; entry \(1,\)"):
    simplex.as_policy([1.0, 0.0], "mu", strictly_positive=True)
  with pytest.raises(ValueError, match="3 responses.*2 were expected"):
    simplex.as_policy([0.2, 0.3, 0.5], "pi", num_responses=2)


def test_kl_handles_zeros_and_missing_support():
  assert simplex.kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(
      np.log(2.0))
  assert simplex.kl_divergence([0.5, 0.5], [1.0, 0.0]) == np.inf
  assert simplex.kl_from_logs(np.array([0.0, -np.inf]),
                              np.log([0.5, 0.5])) == pytest.approx(np.log(2))
