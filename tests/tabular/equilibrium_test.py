"""Tests for the regularised Nash solver, exploitability and the LP solver."""

import numpy as np
import pytest

from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import games
from nlhf_jax.tabular import simplex


def _game(n, seed, mu_kind):
  rng = np.random.default_rng(seed)
  prefs = games.random_preference_matrix(n, rng)
  if mu_kind == "uniform":
    mu = np.full(n, 1.0 / n)
  else:  # Peaked, far from uniform, with some tiny entries.
    mu = rng.dirichlet(np.full(n, 0.3))
    mu = np.maximum(mu, 1e-8)
    mu /= mu.sum()
  return prefs, mu


@pytest.mark.parametrize("n", [2, 3, 10, 50])
@pytest.mark.parametrize("tau", [1e-3, 0.01, 0.1, 1.0, 10.0])
@pytest.mark.parametrize("mu_kind", ["uniform", "dirichlet"])
def test_solution_is_the_fixed_point_to_1e10(n, tau, mu_kind):
  prefs, mu = _game(n, seed=n, mu_kind=mu_kind)
  sol = equilibrium.solve_regularized_nash(prefs, mu, tau)
  best_response = equilibrium.regularized_best_response(prefs, sol.policy, mu,
                                                        tau)
  # pi = mu exp(P(y > pi)/tau) / Z, in probability and in log space.
  np.testing.assert_allclose(sol.policy, best_response, rtol=1e-10, atol=0)
  assert equilibrium.fixed_point_residual(prefs, sol.log_policy, np.log(mu),
                                          tau) <= 1e-10
  assert abs(float(sol.exploitability)) <= 1e-14
  assert sol.policy.sum() == pytest.approx(1.0, abs=1e-14)


def test_mirror_prox_alone_reaches_the_same_equilibrium():
  prefs, mu = _game(8, seed=3, mu_kind="dirichlet")
  newton = equilibrium.solve_regularized_nash(prefs, mu, 0.05)
  mirror = equilibrium.solve_regularized_nash(prefs, mu, 0.05, newton=False)
  assert mirror.newton_steps == 0 and mirror.iterations > 50
  np.testing.assert_allclose(mirror.policy, newton.policy, rtol=1e-9)


def test_equilibrium_is_unexploitable_and_other_policies_are_not():
  prefs, mu = _game(6, seed=4, mu_kind="dirichlet")
  tau = 0.1
  star = equilibrium.solve_regularized_nash(prefs, mu, tau).policy
  rng = np.random.default_rng(5)
  others = rng.dirichlet(np.ones(6), size=200)
  # P_tau(pi* > pi') >= 1/2 for every pi' (pi* is a maximin policy) ...
  assert np.all(equilibrium.regularized_preference(prefs, star, others, mu,
                                                   tau) >= 0.5 - 1e-14)
  # ... and every other policy is strictly exploitable.
  assert np.all(equilibrium.exploitability(prefs, others, mu, tau) > 1e-6)


def test_exploitability_is_attained_by_the_gibbs_best_response():
  prefs, mu = _game(5, seed=6, mu_kind="dirichlet")
  tau, rng = 0.3, np.random.default_rng(7)
  pi = rng.dirichlet(np.ones(5))
  best = equilibrium.regularized_best_response(prefs, pi, mu, tau)
  gain = equilibrium.regularized_preference(prefs, best, pi, mu, tau) - 0.5
  assert equilibrium.exploitability(prefs, pi, mu, tau) == pytest.approx(
      gain, abs=1e-14)
  challengers = rng.dirichlet(np.ones(5), size=500)
  assert np.all(equilibrium.regularized_preference(prefs, challengers, pi, mu,
                                                   tau) <= gain + 0.5 + 1e-14)


def test_regularized_preference_is_antisymmetric():
  prefs, mu = _game(4, seed=8, mu_kind="dirichlet")
  rng = np.random.default_rng(9)
  pi, other = rng.dirichlet(np.ones(4), size=2)
  forward = equilibrium.regularized_preference(prefs, pi, other, mu, 0.2)
  backward = equilibrium.regularized_preference(prefs, other, pi, mu, 0.2)
  assert forward + backward == pytest.approx(1.0, abs=1e-15)
  assert equilibrium.regularized_preference(prefs, pi, pi, mu,
                                            0.2) == pytest.approx(0.5)


def test_batched_solve_matches_single_solves():
  rng = np.random.default_rng(10)
  prefs = games.random_preference_matrix(5, rng, batch_shape=(3,))
  mu = rng.dirichlet(np.ones(5), size=3)
  batched = equilibrium.solve_regularized_nash(prefs, mu, 0.02)
  for x in range(3):
    single = equilibrium.solve_regularized_nash(prefs[x], mu[x], 0.02)
    np.testing.assert_allclose(batched.policy[x], single.policy, rtol=1e-11)


def test_large_tau_gives_mu():
  prefs = games.cyclic_preference_matrix(5)
  mu = np.random.default_rng(11).dirichlet(np.ones(5))
  near_mu = equilibrium.solve_regularized_nash(prefs, mu, 1e4).policy
  assert simplex.kl_divergence(near_mu, mu) < 1e-8


@pytest.mark.parametrize("prefs", [
    games.cyclic_preference_matrix(3),
    games.random_preference_matrix(6, np.random.default_rng(11)),
])
def test_small_tau_approaches_the_unique_lp_nash(prefs):
  n = prefs.shape[0]
  mu = np.random.default_rng(11).dirichlet(np.ones(n))
  lp_nash, value = equilibrium.solve_nash_lp(prefs)
  assert value == pytest.approx(0.5, abs=1e-12)
  distances = []
  for tau in (1e-2, 1e-3, 1e-4):
    star = equilibrium.solve_regularized_nash(prefs, mu, tau, tol=1e-9).policy
    # P_tau(pi* > pi') >= 1/2 implies P(pi* > pi') >= 1/2 - tau max KL(pi', mu)
    # = 1/2 - tau log(1 / min mu): the unregularised exploitability bound.
    assert equilibrium.exploitability(prefs, star) <= tau * np.log(
        1 / mu.min())
    distances.append(np.abs(star - lp_nash).max())
  assert distances[2] < distances[1] < distances[0]
  assert distances[2] < 1e-3


def test_lp_nash_of_random_matrices_wins_at_least_half():
  rng = np.random.default_rng(12)
  for n in (3, 6, 15):
    prefs = games.random_preference_matrix(n, rng)
    pi, value = equilibrium.solve_nash_lp(prefs)
    assert value == pytest.approx(0.5, abs=1e-9)
    assert np.all(pi @ prefs >= 0.5 - 1e-9)
    assert equilibrium.exploitability(prefs, pi) <= 1e-9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tau=0.0), "tau must be finite and > 0"),
        (dict(tau=-1.0), "tau must be finite and > 0"),
        (dict(tau=0.1, mu=[0.5, 0.5, 0.0]), r"mu entries must be > 0"),
        (dict(tau=0.1, mu=[0.5, 0.5]), "2 responses.*3 were expected"),
        (dict(tau=0.1, step_size=3.0), r"step_size must lie in \(0, 2\]"),
    ])
def test_solver_rejects_bad_arguments(kwargs, message):
  args = dict(prefs=games.cyclic_preference_matrix(3), mu=np.full(3, 1 / 3))
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    equilibrium.solve_regularized_nash(**args)


def test_solver_reports_when_it_runs_out_of_iterations():
  prefs, mu = _game(10, seed=13, mu_kind="dirichlet")
  with pytest.raises(RuntimeError, match="did not reach residual"):
    equilibrium.solve_regularized_nash(prefs, mu, 1e-3, max_iter=2,
                                       newton=False)
