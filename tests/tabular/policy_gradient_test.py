"""Tests for the exact expected Nash-MD-PG gradient of a softmax policy."""

import itertools

import numpy as np
import pytest

from nlhf_jax.tabular import dynamics
from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import games
from nlhf_jax.tabular import policy_gradient as pg
from nlhf_jax.tabular import simplex


def _setup(n, seed):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=n), rng.dirichlet(np.ones(n)),
          games.random_preference_matrix(n, rng))


@pytest.mark.parametrize("n, beta, tau", [
    (n, beta, tau)
    for n, beta, tau in itertools.product([2, 5, 12], [0.0, 0.3, 1.0],
                                          [0.0, 0.05, 0.5])
])
def test_gradient_matches_finite_differences_of_p_tau(n, beta, tau):
  logits, mu, prefs = _setup(n, seed=n)
  opponent = pg.mixture_opponent(logits, mu, beta)  # Held fixed.
  grad = pg.nash_md_pg_expected_gradient(logits, mu, prefs, beta, tau)
  h = 1e-5
  numeric = np.empty(n)
  for k in range(n):
    step = h * np.eye(n)[k]
    numeric[k] = (pg.nash_md_pg_objective(logits + step, opponent, mu, prefs,
                                          tau) -
                  pg.nash_md_pg_objective(logits - step, opponent, mu, prefs,
                                          tau)) / (2 * h)
  np.testing.assert_allclose(grad, numeric, atol=1e-9)
  assert abs(grad.sum()) < 1e-15


@pytest.mark.parametrize("beta, tau", [(0.0, 0.1), (0.5, 0.02), (1.0, 0.3)])
def test_gradient_is_the_expectation_of_the_sampled_estimator(beta, tau):
  """E_{y~pi, y'~pi'} grad log pi(y) (P(y>y') - 1/2 - tau log pi(y)/mu(y))."""
  logits, mu, prefs = _setup(6, seed=7)
  pi = simplex.softmax(logits)
  opponent = pg.mixture_opponent(logits, mu, beta)
  expected = np.zeros(6)
  for y, y_prime in itertools.product(range(6), range(6)):
    score = np.eye(6)[y] - pi  # grad_theta log softmax(theta)[y].
    advantage = prefs[y, y_prime] - 0.5 - tau * np.log(pi[y] / mu[y])
    expected += pi[y] * opponent[y_prime] * score * advantage
  np.testing.assert_allclose(
      pg.nash_md_pg_expected_gradient(logits, mu, prefs, beta, tau), expected,
      atol=1e-15)


def test_natural_gradient_step_with_beta_eta_tau_is_the_nash_md_update():
  """Nash-MD (Eq. 5) = Nash-MD-PG with beta = eta tau and a natural-gradient
  step: theta += eta * grad / pi (the Fisher metric of a softmax policy)."""
  logits, mu, prefs = _setup(8, seed=8)
  tau = 0.1
  for eta in (0.5, 2.0, 10.0):
    grad = pg.nash_md_pg_expected_gradient(logits, mu, prefs, eta * tau, tau)
    natural = simplex.log_normalize(logits + eta * grad /
                                    simplex.softmax(logits))
    nash_md = dynamics.nash_md_step(prefs, simplex.log_normalize(logits),
                                    np.log(mu), tau, eta)
    np.testing.assert_allclose(natural, nash_md, atol=1e-12)


def test_batched_gradient_is_per_prompt():
  rng = np.random.default_rng(9)
  logits = rng.normal(size=(3, 4))
  mu = rng.dirichlet(np.ones(4), size=3)
  prefs = games.random_preference_matrix(4, rng, batch_shape=(3,))
  batched = pg.nash_md_pg_expected_gradient(logits, mu, prefs, 0.25, 0.1)
  for x in range(3):
    np.testing.assert_allclose(
        batched[x],
        pg.nash_md_pg_expected_gradient(logits[x], mu[x], prefs[x], 0.25, 0.1),
        atol=1e-16)


def test_self_play_gradient_vanishes_exactly_at_the_regularised_nash():
  _, mu, prefs = _setup(7, seed=10)
  tau = 0.05
  star = equilibrium.solve_regularized_nash(prefs, mu, tau)
  at_star = pg.nash_md_pg_expected_gradient(star.log_policy, mu, prefs, 0.0,
                                            tau)
  assert np.abs(at_star).max() < 1e-14
  elsewhere = pg.nash_md_pg_expected_gradient(np.log(mu), mu, prefs, 0.0, tau)
  assert np.abs(elsewhere).max() > 1e-3
  # Self-play ascent from mu converges to it on this game (measured KL
  # 0.18 -> 3.4e-5 after 1000 steps -> 1.7e-12 after 3000).
  logs = dynamics.self_play(prefs, mu, tau, learning_rate=1.0, num_steps=3000)
  kl = dynamics.kl_to_target(star.policy, logs)
  assert kl[-1] < 1e-9 and kl[-1] < kl[1000] < kl[100] < kl[0]


def test_beta_one_ascent_converges_to_the_best_response_to_mu():
  _, mu, prefs = _setup(5, seed=11)
  tau = 0.5
  logs = pg.nash_md_pg_ascent(prefs, mu, tau, beta=1.0, learning_rate=5.0,
                              num_steps=2000)
  best = dynamics.best_response_to_mu(prefs, mu, tau)
  assert simplex.kl_divergence(best, np.exp(logs[-1])) < 1e-12
  # P_tau(pi_t > mu) increases monotonically (a concave objective, small lr).
  values = equilibrium.regularized_preference(prefs, np.exp(logs), mu, mu, tau)
  assert np.all(np.diff(values) >= -1e-15)


def test_bad_arguments():
  logits, mu, prefs = _setup(3, seed=12)
  with pytest.raises(ValueError, match=r"beta .* must lie in \[0, 1\]"):
    pg.nash_md_pg_expected_gradient(logits, mu, prefs, 1.5, 0.1)
  with pytest.raises(ValueError, match="logits must be finite with 3"):
    pg.nash_md_pg_expected_gradient(logits[:2], mu, prefs, 0.5, 0.1)
  with pytest.raises(ValueError, match="tau must be >= 0"):
    pg.nash_md_pg_expected_gradient(logits, mu, prefs, 0.5, -0.1)


def test_rlhf_pg_ascent_converges_to_mu_exp_r_over_tau():
  rng = np.random.default_rng(0)
  mu = rng.dirichlet(np.ones(4), size=2)
  reward = rng.normal(size=(2, 4))
  tau = 0.5
  logs = pg.rlhf_pg_ascent(reward, mu, tau, 2.0, 3000)
  target = mu * np.exp(reward / tau)
  target /= target.sum(-1, keepdims=True)
  np.testing.assert_allclose(np.exp(logs[-1]), target, atol=1e-8)
  np.testing.assert_allclose(np.exp(logs[0]), mu)


def test_nash_ema_pg_ascent_converges_to_pi_star_tau():
  rng = np.random.default_rng(1)
  prefs = games.random_preference_matrix(4, rng)
  mu = rng.dirichlet(np.ones(4))
  tau = 0.3
  logs = pg.nash_ema_pg_ascent(prefs, mu, tau, 0.9, 1.0, 6000)
  nash = equilibrium.solve_regularized_nash(prefs, mu, tau).policy
  np.testing.assert_allclose(np.exp(logs[-1]), nash, atol=1e-7)
  with pytest.raises(ValueError, match="decay"):
    pg.nash_ema_pg_ascent(prefs, mu, tau, 1.0, 1.0, 1)
