"""Exact expected Online IPO / IPO-MD updates: the closed-form gradient
against finite differences of the enumerated loss, and the fixed points the
module docstring states (π*_τ at β = 0, Nash-MD-PG's own at β > 0) on random
and cyclic games."""

import numpy as np
import pytest

from nlhf_jax.tabular import dynamics
from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import games
from nlhf_jax.tabular import ipo
from nlhf_jax.tabular import policy_gradient


def _game(seed, n=5):
  rng = np.random.default_rng(seed)
  return (games.random_preference_matrix(n, rng), rng.dirichlet(np.ones(n)),
          rng.normal(size=n))


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_gradient_is_the_derivative_of_the_enumerated_loss(beta):
  prefs, mu, logits = _game(0)
  tau = 0.2
  sampler = policy_gradient.mixture_opponent(logits, mu, beta)
  exact = ipo.ipo_expected_gradient(logits, mu, prefs, beta, tau)
  eps = 1e-6
  numeric = np.array([
      (ipo.ipo_expected_loss(logits + eps * e, sampler, mu, prefs, tau) -
       ipo.ipo_expected_loss(logits - eps * e, sampler, mu, prefs, tau))
      / (2 * eps) for e in np.eye(len(logits))])
  np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-8)
  assert abs(exact.sum()) < 1e-12 and np.abs(exact).max() > 0.1


GAMES = {"random": lambda: _game(1)[:2],
         "cyclic": lambda: (games.cyclic_preference_matrix(5, 0.4),
                            np.array([0.4, 0.3, 0.15, 0.1, 0.05]))}


@pytest.mark.parametrize("name", sorted(GAMES))
def test_online_ipo_converges_to_the_regularised_nash(name):
  prefs, mu = GAMES[name]()
  tau = 0.3
  target = equilibrium.solve_regularized_nash(prefs, mu, tau).policy
  path = ipo.ipo_md_descent(prefs, mu, tau, beta=0.0, learning_rate=0.1,
                            num_steps=5000)
  kl = dynamics.kl_to_target(target, path)
  assert kl[0] > 1e-2 and kl[-1] < 1e-10


@pytest.mark.parametrize("name", sorted(GAMES))
def test_ipo_md_shares_nash_md_pg_fixed_point_not_the_nash(name):
  prefs, mu = GAMES[name]()
  tau, beta = 0.3, 0.5
  ipo_md = np.exp(ipo.ipo_md_descent(prefs, mu, tau, beta, 0.2, 5000)[-1])
  nash_md_pg = np.exp(policy_gradient.nash_md_pg_ascent(
      prefs, mu, tau, beta, learning_rate=2.0, num_steps=6000)[-1])
  np.testing.assert_allclose(ipo_md, nash_md_pg, atol=1e-7)
  # That common fixed point is not pi*_tau (the mixture opponent is not pi).
  target = equilibrium.solve_regularized_nash(prefs, mu, tau).policy
  assert np.abs(ipo_md - target).max() > 1e-3
  # And it satisfies pi ∝ mu exp(P rho / tau) with rho the mixture.
  rho = policy_gradient.mixture_opponent(np.log(ipo_md), mu, beta)
  fixed = mu * np.exp(prefs @ rho / tau)
  np.testing.assert_allclose(ipo_md, fixed / fixed.sum(), atol=1e-7)


def test_bad_settings_raise():
  prefs, mu, logits = _game(2)
  with pytest.raises(ValueError, match="tau"):
    ipo.ipo_expected_gradient(logits, mu, prefs, 0.0, 0.0)
  with pytest.raises(ValueError, match="beta"):
    ipo.ipo_expected_gradient(logits, mu, prefs, 1.5, 0.1)
  with pytest.raises(ValueError, match="learning_rate"):
    ipo.ipo_md_descent(prefs, mu, 0.1, 0.0, 0.0, 10)


def test_egpo_converges_linearly_where_gradient_descent_cycles():
  """EGPO's statement (last-iterate linear convergence to π*_τ) on the
  cyclic game, at a step size where plain descent on the same loss (Online
  IPO) keeps orbiting."""
  prefs, mu = GAMES["cyclic"]()
  tau, lr = 0.02, 0.04
  target = equilibrium.solve_regularized_nash(prefs, mu, tau).policy
  eg = dynamics.kl_to_target(target, ipo.egpo_extragradient(
      prefs, mu, tau, lr, 400))
  gd = dynamics.kl_to_target(target, ipo.ipo_md_descent(
      prefs, mu, tau, 0.0, lr, 400))
  assert eg[-1] < 1e-11
  # Linear: every 100 steps shrink the KL by a factor of at least 20.
  assert all(eg[t + 100] < eg[t] / 20 for t in (100, 200))
  assert gd[-1] > 0.1 and gd[300:].min() > 0.05  # Descent does not settle.


def test_egpo_reaches_the_regularised_nash_of_a_random_game():
  prefs, mu = GAMES["random"]()
  tau = 0.3
  target = equilibrium.solve_regularized_nash(prefs, mu, tau).policy
  kl = dynamics.kl_to_target(target, ipo.egpo_extragradient(
      prefs, mu, tau, 0.5, 1200))
  assert kl[0] > 1e-2 and kl[-1] < 1e-12
