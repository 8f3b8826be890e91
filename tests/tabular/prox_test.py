"""Exact proximal dynamics: the closed-form proximal step, Nash Mirror
Prox's linear convergence to π*_τ and MPO's last iterate against the
unregularised game, and where each statement stops holding."""

import numpy as np
import pytest

from nlhf_jax.tabular import dynamics
from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import games
from nlhf_jax.tabular import prox
from nlhf_jax.tabular import simplex


def _random_game():
  rng = np.random.default_rng(5)
  return games.random_preference_matrix(6, rng), rng.dirichlet(np.ones(6))


def _cyclic_game():
  return (games.cyclic_preference_matrix(5, 0.4),
          np.array([0.4, 0.3, 0.15, 0.1, 0.05]))


def test_proximal_step_maximises_its_objective():
  prefs, mu = _random_game()
  rng = np.random.default_rng(0)
  opponent, previous = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
  tau, eta = 0.3, 2.0

  def objective(pi):
    return (pi @ prefs @ opponent - tau * simplex.kl_divergence(pi, mu)
            - simplex.kl_divergence(pi, previous) / eta)

  best = np.exp(prox.proximal_step(prefs, opponent, np.log(mu),
                                   np.log(previous), tau, eta))
  for _ in range(200):  # No other policy does better.
    assert objective(rng.dirichlet(np.ones(6))) <= objective(best) + 1e-12


@pytest.mark.parametrize("game, tau, eta", [
    (_random_game, 0.1, 1.0), (_cyclic_game, 0.1, 1.0),
    (_random_game, 0.02, 5.0)])
def test_nash_mirror_prox_converges_linearly(game, tau, eta):
  """KL(π*_τ, π_k) shrinks by at least 1/(1 + 2ητ) per iteration (two
  preference queries): the paper's (1 + 2β)^(−N/2) in N queries, reading
  its β as ητ (our reading of its notation)."""
  prefs, mu = game()
  target = equilibrium.solve_regularized_nash(prefs, mu, tau).policy
  kl = dynamics.kl_to_target(target, prox.nash_mirror_prox(prefs, mu, tau,
                                                           eta, 40))
  assert np.all(kl[1:21] <= kl[:20] / (1 + 2 * eta * tau))
  assert kl[-1] < 1e-3 * kl[0]


def test_nash_mirror_prox_needs_a_small_enough_step():
  """The rate is not free: with η = 10 on the cyclic game the iterates stop
  approaching π*_τ (the statement needs η below the game's smoothness)."""
  prefs, mu = _cyclic_game()
  target = equilibrium.solve_regularized_nash(prefs, mu, 0.1).policy
  kl = dynamics.kl_to_target(target, prox.nash_mirror_prox(prefs, mu, 0.1,
                                                           10.0, 60))
  assert kl[-1] > 0.02


def _exploitability(prefs, logs):
  return np.array([equilibrium.exploitability(prefs, np.exp(l))
                   for l in logs])


def test_mpo_last_iterate_solves_the_unregularised_cycle():
  prefs, mu = _cyclic_game()
  refreshed = _exploitability(prefs, prox.magnetic_preference_optimization(
      prefs, mu, tau=0.1, eta=1.0, num_steps=6000, refresh_every=10))
  fixed = _exploitability(prefs, prox.magnetic_preference_optimization(
      prefs, mu, tau=0.1, eta=1.0, num_steps=6000, refresh_every=10**9))
  assert refreshed[0] > 0.1 and refreshed[-200:].max() < 1e-4
  # A magnet that stays at μ converges to π*_τ, exploitable at τ = 0.
  assert fixed[-1] > 0.05


def test_mpo_last_iterate_on_a_game_with_an_edge_equilibrium():
  """Where the equilibrium leaves some responses out (this random game),
  the last iterate gets close at some settings but keeps spiking at
  others: the statement is not uniform in (τ, η, K)."""
  prefs, mu = _random_game()
  good = _exploitability(prefs, prox.magnetic_preference_optimization(
      prefs, mu, tau=0.1, eta=1.0, num_steps=6000, refresh_every=10))
  assert good[-200:].max() < 5e-3
  spiky = _exploitability(prefs, prox.magnetic_preference_optimization(
      prefs, mu, tau=0.2, eta=1.0, num_steps=3000, refresh_every=20))
  assert spiky[1000] < 5e-3 and spiky[-200:].max() > 0.05


def test_bad_settings_raise():
  prefs, mu = _random_game()
  with pytest.raises(ValueError, match="eta"):
    prox.nash_mirror_prox(prefs, mu, 0.1, 0.0, 5)
  with pytest.raises(ValueError, match="refresh_every"):
    prox.magnetic_preference_optimization(prefs, mu, 0.1, 1.0, 5, 0)
