"""Tests for contextual (prompt-dependent) preference games."""

import numpy as np
import pytest

from nlhf_jax.tabular import contextual
from nlhf_jax.tabular import dynamics
from nlhf_jax.tabular import equilibrium


def _game(seed=0, num_prompts=5, n=6):
  return contextual.random_contextual_game(num_prompts, n,
                                           np.random.default_rng(seed),
                                           mu_concentration=0.5)


@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0])
def test_per_prompt_equilibrium_equals_each_prompts_own_solution(tau):
  game = _game()
  joint = contextual.solve_nash(game, tau)
  assert joint.policy.shape == (5, 6)
  for x in range(game.num_prompts):
    alone = equilibrium.solve_regularized_nash(game.prefs[x], game.mu[x], tau)
    np.testing.assert_allclose(joint.policy[x], alone.policy, rtol=1e-11)
  assert abs(contextual.exploitability(game, joint.policy, tau)) < 1e-14


def test_contextual_equilibrium_is_maximin_for_the_rho_weighted_game():
  game, tau = _game(seed=1), 0.1
  star = contextual.solve_nash(game, tau).policy
  rng = np.random.default_rng(2)
  for _ in range(100):
    other = rng.dirichlet(np.ones(6), size=5)
    value = contextual.regularized_preference(game, star, other, tau)
    assert value >= 0.5 - 1e-14
    assert contextual.exploitability(game, other, tau) > 0
  # The rho-weighted preference is the rho-average of per-prompt ones.
  other = rng.dirichlet(np.ones(6), size=5)
  per_prompt = [
      equilibrium.regularized_preference(game.prefs[x], star[x], other[x],
                                         game.mu[x], tau) for x in range(5)
  ]
  assert contextual.regularized_preference(game, star, other,
                                           tau) == pytest.approx(
                                               game.rho @ per_prompt, abs=1e-15)


def test_contextual_nash_md_matches_per_prompt_runs_and_the_kl_rho_bound():
  game, tau, steps = _game(seed=3), 0.2, 300
  star = contextual.solve_nash(game, tau).policy
  joint = dynamics.nash_md(game.prefs, game.mu, tau, steps)
  assert joint.shape == (steps + 1, 5, 6)
  for x in range(game.num_prompts):
    alone = dynamics.nash_md(game.prefs[x], game.mu[x], tau, steps)
    np.testing.assert_allclose(joint[:, x], alone, atol=1e-12)
  kl_rho = dynamics.kl_to_target(star, joint) @ game.rho  # KL_rho(pi*, pi_t).
  t = np.arange(1, steps + 1)
  assert np.all(kl_rho[1:] <= dynamics.nash_md_bound(tau, t))
  assert kl_rho[-1] < 1e-4


def test_contextual_unregularised_exploitability_uses_pure_responses():
  game = _game(seed=4, num_prompts=2, n=3)
  uniform = np.full((2, 3), 1 / 3)
  expected = game.rho @ (
      equilibrium.preference_against(game.prefs, uniform).max(axis=-1)) - 0.5
  assert contextual.exploitability(game, uniform, 0.0) == pytest.approx(
      expected, abs=1e-15)


def test_contextual_game_validation():
  game = _game(seed=5, num_prompts=2, n=3)
  with pytest.raises(ValueError, match=r"mu must have shape \(X, n\)"):
    contextual.ContextualGame(game.prefs, game.mu[0], game.rho)
  with pytest.raises(ValueError, match="rho entries must be > 0"):
    contextual.ContextualGame(game.prefs, game.mu, np.array([1.0, 0.0]))
  with pytest.raises(ValueError, match=r"prefs must have shape \(X, n, n\)"):
    contextual.ContextualGame(game.prefs[0], game.mu, game.rho)
  with pytest.raises(ValueError, match=r"pi must have shape \(X, n\)"):
    contextual.exploitability(game, np.full(3, 1 / 3), 0.1)
