"""Tests for the exact targets: outcome game = sequence game; the theory's
winners on the ready worlds."""

import itertools

import numpy as np
import pytest

from nlhf_jax.finite_world import population as pop
from nlhf_jax.finite_world import targets
from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import simplex

EOS, TOKENS, MAX_LEN = "$", "ab", 3
ANSWERS = ("a$", "ba$", "bb$")  # Outcomes 0..2; everything else is 3.


def _autoregressive_game(seed):
  """Every sequence of <= 3 tokens over {a, b, EOS} (stopping at EOS), its μ
  from a random next-token table on the prefix, and its outcome."""
  rng = np.random.default_rng(seed)
  table = {}
  sequences, probs = [], []
  for length in range(1, MAX_LEN + 1):
    for body in itertools.product(TOKENS, repeat=length - 1):
      for last in TOKENS + EOS:
        if length < MAX_LEN and last != EOS:
          continue  # Continued below at the next length.
        seq = "".join(body) + last
        p = 1.0
        for t in range(len(seq)):
          prefix = seq[:t]
          if prefix not in table:
            table[prefix] = rng.dirichlet(np.ones(3))
          p *= table[prefix][(TOKENS + EOS).index(seq[t])]
        sequences.append(seq)
        probs.append(p)
  mu = np.array(probs)
  np.testing.assert_allclose(mu.sum(), 1.0)  # Every continuation is listed.
  outcome_of = np.array([ANSWERS.index(s) if s in ANSWERS else 3
                         for s in sequences])
  return sequences, mu, outcome_of


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("tau", [0.05, 0.3])
def test_outcome_equilibrium_is_the_sequence_equilibrium(seed, tau):
  _, mu_seq, outcome_of = _autoregressive_game(seed)
  assert len(mu_seq) == 15 and set(outcome_of) == {0, 1, 2, 3}
  # An outcome game: the majority kitchen population, "other" loses.
  prefs_o = pop.ready_world("majority").preference()[0]
  mu_o = targets.outcome_distribution(mu_seq, outcome_of, 4)
  prefs_seq = prefs_o[np.ix_(outcome_of, outcome_of)]
  sequence_nash = equilibrium.solve_regularized_nash(prefs_seq, mu_seq,
                                                     tau).policy
  outcome_nash = targets.regularized_nash(prefs_o[None], mu_o[None], tau)[0]
  np.testing.assert_allclose(
      targets.lift_to_sequences(outcome_nash, mu_seq, outcome_of),
      sequence_nash, rtol=1e-9, atol=1e-15)
  np.testing.assert_allclose(
      targets.outcome_distribution(sequence_nash, outcome_of, 4),
      outcome_nash, atol=1e-12)
  # The best response to μ and μ exp(r/τ) lift the same way.
  np.testing.assert_allclose(
      targets.lift_to_sequences(targets.best_response_to_reference(
          prefs_o[None], mu_o[None], tau)[0], mu_seq, outcome_of),
      equilibrium.regularized_best_response(prefs_seq, mu_seq, mu_seq, tau),
      rtol=1e-9)
  reward_o = np.array([0.3, -0.1, 0.5, -2.0])
  np.testing.assert_allclose(
      targets.lift_to_sequences(targets.rlhf_target(reward_o[None],
                                                    mu_o[None], tau)[0],
                                mu_seq, outcome_of),
      targets.rlhf_target(reward_o[outcome_of][None], mu_seq[None], tau)[0],
      rtol=1e-9)
  # KL between lifted policies = KL between outcome distributions.
  other = targets.lift_to_sequences(mu_o[::-1] / mu_o.sum(), mu_seq,
                                    outcome_of)
  assert simplex.kl_divergence(sequence_nash, other) == pytest.approx(
      simplex.kl_divergence(outcome_nash, mu_o[::-1]), rel=1e-9)


def _uniform_mu(world, other=0.01):
  offered = world.offered_mask()
  mu = offered * (1 - other) / offered.sum(-1, keepdims=True)
  mu[:, -1] = other
  mu = np.where(offered | (np.arange(4) == 3), mu, 1e-3)
  return mu / mu.sum(-1, keepdims=True)


TAU = 0.05


def test_majority_nash_picks_condorcet_rlhf_picks_borda():
  world = pop.ready_world("majority")
  prefs, mu = world.preference(), _uniform_mu(world)
  nash = targets.regularized_nash(prefs, mu, TAU)
  reward = targets.bradley_terry_reward(prefs, mu, world.offered_mask())
  rlhf = targets.rlhf_target(reward, mu, TAU)
  for x in range(2):
    assert np.argmax(nash[x]) == world.condorcet_winners()[x]
    assert np.argmax(rlhf[x]) == world.borda_winners()[x]
  assert nash[0, 0] > 0.8 and rlhf[0, 1] > 0.99  # τ = 0.05.
  # τ → 0: the Nash target becomes the pure Condorcet winner.
  np.testing.assert_allclose(targets.regularized_nash(prefs, mu, 0.0)[:, :3],
                             [[1, 0, 0], [0, 0, 1]], atol=1e-9)


def test_iia_rlhf_flips_nash_does_not():
  world = pop.ready_world("iia")
  prefs, mu = world.preference(), _uniform_mu(world)
  nash = targets.regularized_nash(prefs, mu, TAU)
  rlhf = targets.rlhf_target(
      targets.bradley_terry_reward(prefs, mu, world.offered_mask()), mu, TAU)
  assert np.argmax(nash, -1).tolist() == [0, 0]
  assert np.argmax(rlhf, -1).tolist() == [0, 1]
  assert nash[0, 2] < 1e-6  # Blue is not offered at the first prompt.


def test_cyclic_nash_mixes_rlhf_keeps_mu():
  world = pop.ready_world("cyclic")
  prefs, mu = world.preference(), _uniform_mu(world)
  nash = targets.regularized_nash(prefs, mu, TAU)
  np.testing.assert_allclose(nash[0, :3], nash[0, 0], rtol=1e-9)
  reward = targets.bradley_terry_reward(prefs, mu, world.offered_mask())
  # A symmetric cycle has equal Bradley–Terry scores: RLHF stays at μ there.
  np.testing.assert_allclose(targets.rlhf_target(reward, mu, TAU)[0, :3],
                             mu[0, :3] / mu[0, :3].sum(), rtol=1e-3)
  # The lopsided cycle's maximal lottery (τ = 0) by hand: π ∝ (margins of
  # the opposite edge) = (0.25, 0.1, 0.15) / 0.5 for red, green, blue.
  lottery = targets.regularized_nash(prefs, mu, 0.0)[1]
  np.testing.assert_allclose(lottery[:3], [0.5, 0.2, 0.3], atol=1e-9)


def test_bradley_terry_reward_gives_unseen_outcomes_the_margin():
  world = pop.ready_world("iia")
  mu = _uniform_mu(world)
  reward = targets.bradley_terry_reward(world.preference(), mu,
                                        world.offered_mask(), margin=4.0)
  np.testing.assert_allclose(reward[0, 2:], reward[0, :2].min() - 4.0)
  np.testing.assert_allclose(reward[0, 0] - reward[0, 1], np.log(0.6 / 0.4))
