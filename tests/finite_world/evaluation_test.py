"""Tests for the exact-target evaluation: the teacher-forced outcome
distribution against sampled frequencies, the metrics by hand, and which
target each algorithm gets."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from nlhf_jax import sampling
from nlhf_jax import train_state
from nlhf_jax.algorithms import mpo
from nlhf_jax.algorithms import nash_ema
from nlhf_jax.algorithms import nash_md
from nlhf_jax.algorithms import nash_prox
from nlhf_jax.algorithms import online_ipo
from nlhf_jax.algorithms import rlhf
from nlhf_jax.algorithms import sft
from nlhf_jax.errors import ConfigError
from nlhf_jax.finite_world import data as data_lib
from nlhf_jax.finite_world import evaluation
from nlhf_jax.finite_world import judge
from nlhf_jax.finite_world import population as pop
from nlhf_jax.finite_world import targets
from nlhf_jax.finite_world import tokens
from nlhf_jax.models import init as model_init
from nlhf_jax.models import t5
from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import simplex

SOURCE = data_lib.FiniteWorldSource(pop.ready_world("majority"))
MODEL = t5.T5(t5.T5Config(vocab_size=32, d_model=16, num_heads=2, d_kv=8,
                          d_ff=32, num_encoder_layers=1,
                          num_decoder_layers=1))


def _params(seed):
  return nn.unbox(model_init.init_fn(MODEL, seed)())


def _partly_trained_params(steps=12):
  """A tiny T5 after a few SFT steps: answers and "other" all likely."""
  state = train_state.TrainState.create(_params(3), optax.adam(1e-2))
  step = jax.jit(sft.make_train_step(MODEL))
  batch = SOURCE.arrays("train")
  for i in range(steps):
    state, _ = step(state, batch, jax.random.PRNGKey(i))
  return state.params


def test_outcome_distribution_matches_sampled_frequencies():
  # 8192 samples per prompt against the teacher-forced distribution.
  params = _partly_trained_params()
  batch = SOURCE.arrays("outcomes")
  logp = jax.jit(lambda p, b: evaluation._answer_logprobs(MODEL, p, b))(
      params, batch)
  exact = evaluation.outcome_distribution(
      evaluation._by_prompt_and_answer(np.asarray(logp), batch, (2, 3)))
  n = 8192
  prompts = np.repeat(SOURCE.prompt_rows(), n, axis=0)
  out = jax.jit(lambda p, x, r: sampling.sample(
      MODEL, p, x, r, sampling.SamplingConfig(max_decode_length=4)))(
          params, prompts, jax.random.PRNGKey(0))
  sampled = np.asarray(tokens.outcomes(out.tokens, SOURCE.answer_rows()))
  for x in range(2):
    freq = np.bincount(sampled[x * n:(x + 1) * n], minlength=4) / n
    # 4.5 standard errors per outcome.
    tol = 4.5 * np.sqrt(exact[x] * (1 - exact[x]) / n) + 1e-4
    np.testing.assert_array_less(np.abs(freq - exact[x]), tol)
  assert exact.min() > 0.01  # Every outcome was really tested.


def test_summary_by_hand():
  world = SOURCE.world
  pi = np.array([[0.7, 0.2, 0.05, 0.05], [0.1, 0.1, 0.7, 0.1]])
  mu = np.array([[0.3, 0.3, 0.3, 0.1], [0.3, 0.3, 0.3, 0.1]])
  tau = 0.1
  target = lambda prefs, m: targets.regularized_nash(prefs, m, tau)
  out = evaluation.summarize_outcomes(world, target, tau, np.log(pi[:, :3]),
                                      np.log(mu[:, :3]))
  nash = targets.regularized_nash(world.preference(), mu, tau)
  assert out["kl_to_nash"] == pytest.approx(
      np.mean(simplex.kl_divergence(nash, pi)), rel=1e-9)
  assert out["kl_to_target"] == out["kl_to_nash"]
  assert out["p_condorcet"] == pytest.approx((0.7 + 0.7) / 2)  # red, blue.
  assert out["p_borda"] == pytest.approx((0.2 + 0.1) / 2)  # green, red.
  assert out["policy/1/other"] == pytest.approx(0.1)
  assert out["kl_reference_to_target"] == pytest.approx(
      np.mean(simplex.kl_divergence(nash, mu)), rel=1e-9)


@pytest.mark.parametrize("config, name", [
    (nash_md.NashMDConfig(beta=0.125, tau=0.05), "π*_τ"),
    (nash_md.NashMDConfig(beta=0.0, tau=0.05), "π*_τ"),
    (nash_md.NashMDConfig(beta=1.0, tau=0.05), "best response to μ"),
    (nash_ema.NashEMAConfig(tau=0.05), "π*_τ"),
    (online_ipo.OnlineIPOConfig(tau=0.05), "π*_τ"),
    (rlhf.RLHFConfig(tau=0.05), "μ exp(r/τ)"),
    (nash_prox.NashProxConfig(tau=0.05), "π*_τ"),
    (mpo.MPOConfig(tau=0.05), "Nash equilibrium (τ = 0)"),
])
def test_targets_of_algorithms(config, name):
  got, target = evaluation.target_of(config, SOURCE)
  assert got == name
  prefs = SOURCE.world.preference()
  mu = np.full((2, 4), 0.25)
  expected = {
      "π*_τ": targets.regularized_nash(prefs, mu, 0.05),
      "best response to μ": targets.best_response_to_reference(prefs, mu,
                                                                0.05),
      "μ exp(r/τ)": targets.rlhf_target(judge.bradley_terry_table(SOURCE),
                                        mu, 0.05),
      "Nash equilibrium (τ = 0)": np.stack(
          [equilibrium.solve_nash_lp(p)[0] for p in prefs])}[name]
  np.testing.assert_allclose(target(prefs, mu), expected)


def test_unknown_algorithm_and_data_are_config_errors():
  with pytest.raises(ConfigError, match="No exact finite-world target"):
    evaluation.target_of(object(), SOURCE)
  with pytest.raises(ConfigError, match="FiniteWorldSource"):
    evaluation.ExactTargets().build(MODEL, rlhf.RLHFConfig(), object())
