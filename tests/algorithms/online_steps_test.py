"""Online algorithm steps on tiny T5s: compile once, finite metrics, updates.

Covers Nash-MD-PG (SP / MD / BR as β values), Nash-EMA-PG, RLHF, Online
IPO, IPO-MD, EGPO, Nash Prox and MPO, each as a jitted step(state, batch, rng, frozen) on
the 8 fake devices.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nlhf_jax import partitioning
from nlhf_jax.algorithms import nash_ema
from nlhf_jax.algorithms import nash_md
from nlhf_jax.algorithms import egpo
from nlhf_jax.algorithms import ipo_md
from nlhf_jax.algorithms import mpo
from nlhf_jax.algorithms import nash_prox
from nlhf_jax.algorithms import online
from nlhf_jax.algorithms import online_ipo
from nlhf_jax.models import preference as pm_lib
from nlhf_jax.models import reward as rm_lib
from nlhf_jax.algorithms import rlhf
from nlhf_jax.errors import ConfigError
from nlhf_jax.judges import pairwise
from nlhf_jax.judges import pointwise
from nlhf_jax.models import T5
from nlhf_jax.models import T5Config
from nlhf_jax.models import T5Scorer
from nlhf_jax.train_state import Frozen
from nlhf_jax.train_state import TrainState

CFG = T5Config(vocab_size=64, d_model=32, num_heads=4, d_kv=8, d_ff=64,
               num_encoder_layers=1, num_decoder_layers=1)
RESPONSES = online.ResponseConfig(max_decode_length=6)
PAIR = pm_lib.PairLayout(length=24, first_marker=(5,), second_marker=(6,))
REWARD = rm_lib.RewardLayout(length=16, marker=(5,))


def _pm(scorer):
  return pairwise.PreferenceModelJudge(scorer, PAIR)


@pytest.fixture(scope="module")
def models():
  prompts = jax.random.randint(jax.random.PRNGKey(0), (8, 8), 2, 64)
  policy, scorer = T5(CFG), T5Scorer(CFG)
  p_params = nn.unbox(policy.init(jax.random.PRNGKey(1), prompts,
                                  prompts[:, :4])["params"])
  s_params = nn.unbox(scorer.init(jax.random.PRNGKey(2), prompts)["params"])
  return policy, scorer, p_params, s_params, {"encoder_input_tokens": prompts}


def _run(step, models, with_ema=False, steps=3, optimizer=None,
         with_anchor=False):
  policy, scorer, p_params, s_params, batch = models
  state = TrainState.create(p_params, optimizer or optax.adam(1e-2),
                            with_ema=with_ema, with_anchor=with_anchor)
  frozen = Frozen(reference=p_params, judge=s_params)
  mesh = partitioning.make_mesh(partitioning.MeshConfig(-1, 1, 1))
  traces = []

  def traced(*args):
    traces.append(1)
    return step(*args)

  replicated = partitioning.replicated(mesh)
  state, frozen = jax.device_put((state, frozen), replicated)
  batch = jax.device_put(batch, partitioning.batch_sharding(mesh))
  with partitioning.activate(mesh):
    jitted = jax.jit(traced)
    history = []
    for i in range(steps):
      state, metrics = jitted(state, batch, jax.random.PRNGKey(i), frozen)
      history.append(jax.device_get(metrics))
  assert len(traces) == 1, "the step recompiled"
  for metrics in history:
    for name, value in metrics.items():
      assert np.all(np.isfinite(value)), (name, value)
  assert int(state.step) == steps
  moved = max(float(jnp.abs(a - b).max()) for a, b in zip(
      jax.tree.leaves(state.params), jax.tree.leaves(p_params)))
  assert moved > 0
  return state, history


def test_nash_md_step(models, beta=0.125):
  policy, scorer = models[0], models[1]
  step = nash_md.make_train_step(policy, policy, _pm(scorer),
                                 nash_md.NashMDConfig(beta=beta, tau=0.008),
                                 RESPONSES)
  _, history = _run(step, models)
  for key in ("loss", "preference_vs_opponent", "kl_to_reference",
              "response_length", "opponent_length", "policy_entropy",
              "grad_norm", "generated_tokens"):
    assert key in history[0]
  # Step 0: the policy equals the reference, so the KL estimate is 0.
  assert abs(history[0]["kl_to_reference"]) < 1e-4
  assert 0.0 <= history[0]["preference_vs_opponent"] <= 1.0


def test_self_play_preference_is_one_half_at_identical_policies(models):
  """With β = 0 the two samples share a distribution; symmetrised P over a
  pair of identical responses is exactly ½, so the mean is near ½."""
  policy, scorer = models[0], models[1]
  step = nash_md.make_train_step(policy, policy, _pm(scorer),
                                 nash_md.NashMDConfig(beta=0.0), RESPONSES)
  _, history = _run(step, models, steps=1)
  assert 0.3 < history[0]["preference_vs_opponent"] < 0.7


def test_nash_ema_step_tracks_the_average(models):
  policy, scorer, p_params = models[0], models[1], models[2]
  decay = 0.5
  step = nash_ema.make_train_step(policy, policy, _pm(scorer),
                                  nash_ema.NashEMAConfig(decay=decay),
                                  RESPONSES)
  state, _ = _run(step, models, with_ema=True, steps=2)
  # After updates θ1, θ2: θ̄ = d(dθ0 + (1−d)θ1) + (1−d)θ2 lies strictly
  # between the initial and the current parameters.
  ema = jax.tree.leaves(state.ema_params)
  cur = jax.tree.leaves(state.params)
  ini = jax.tree.leaves(p_params)
  assert any(float(jnp.abs(e - c).max()) > 0 for e, c in zip(ema, cur))
  assert any(float(jnp.abs(e - i).max()) > 0 for e, i in zip(ema, ini))


def test_rlhf_step(models):
  policy, scorer = models[0], models[1]
  step = rlhf.make_train_step(policy, policy,
                              pointwise.RewardModelJudge(scorer, REWARD),
                              rlhf.RLHFConfig(tau=0.05), RESPONSES)
  _, history = _run(step, models)
  assert "reward" in history[0]


def test_leave_one_out_baseline():
  r = jnp.array([1.0, 2.0, 6.0])
  np.testing.assert_allclose(rlhf.leave_one_out_baseline(r), [4.0, 3.5, 1.5])


def test_online_ipo_step(models):
  policy, scorer = models[0], models[1]
  step = online_ipo.make_train_step(policy, policy, _pm(scorer),
                                    online_ipo.OnlineIPOConfig(tau=1.0),
                                    RESPONSES)
  _run(step, models)


def test_ipo_md_step(models):
  policy, scorer = models[0], models[1]
  step = ipo_md.make_train_step(policy, policy, _pm(scorer),
                                ipo_md.IPOMDConfig(beta=0.5, tau=1.0),
                                RESPONSES)
  _run(step, models)


def test_ipo_md_at_beta_zero_is_online_ipo(models):
  policy, scorer = models[0], models[1]
  runs = [_run(make(policy, policy, _pm(scorer), config, RESPONSES), models,
               steps=2)[0]
          for make, config in (
              (ipo_md.make_train_step, ipo_md.IPOMDConfig(beta=0.0, tau=1.0)),
              (online_ipo.make_train_step,
               online_ipo.OnlineIPOConfig(tau=1.0)))]
  for a, b in zip(*(jax.tree.leaves(r.params) for r in runs)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_egpo_step_applies_the_corrector_from_the_snapshot(models):
  """With SGD, θ⁺ = θ − η ∇L(θ½; samples of π_θ½), θ½ = θ − η ∇L(θ; ...)."""
  policy, scorer, p_params, s_params, batch = models
  judge, tau, lr = _pm(scorer), 1.0, 0.5
  step = egpo.make_train_step(policy, policy, judge, egpo.EGPOConfig(tau=tau),
                              RESPONSES)
  new, history = _run(step, models, optimizer=optax.sgd(lr), steps=1)
  assert "predictor_loss" in history[0]
  frozen = Frozen(reference=p_params, judge=s_params)
  prompts = batch["encoder_input_tokens"]
  config = RESPONSES.sampling_config()

  @jax.jit
  def by_hand(params):
    keys = jax.random.split(jax.random.PRNGKey(0))  # _run's first step RNG.
    grad = lambda at, key: online_ipo.ipo_gradients(
        policy, judge, tau, at, prompts, *online.sample_pair(
            policy, at, policy, p_params, prompts, key, 0.0, 0.0, config),
        frozen)[0]
    half = jax.tree.map(lambda p, g: p - lr * g, params, grad(params, keys[0]))
    return half, jax.tree.map(lambda p, g: p - lr * g, params,
                              grad(half, keys[1]))

  half, expected = by_hand(p_params)
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
  moved = max(float(jnp.abs(a - h).max()) for a, h in zip(
      jax.tree.leaves(new.params), jax.tree.leaves(half)))
  assert moved > 1e-3  # Not the predictor, and not a step from θ½.


def _differs(a, b):
  return any(float(jnp.abs(x - y).max()) > 0 for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("make_step, config, metric", [
    (nash_prox.make_train_step,
     nash_prox.NashProxConfig(tau=0.008, eta=10.0, inner_steps=2),
     "kl_to_anchor"),
    (mpo.make_train_step, mpo.MPOConfig(tau=0.05, refresh_every=2),
     "kl_to_magnet")])
def test_anchored_steps_refresh_their_anchor_on_schedule(models, make_step,
                                                         config, metric):
  """Anchor period 2, three steps: the anchor is the iterate after step 2,
  neither the initial parameters nor the current ones."""
  policy, scorer, p_params = models[0], models[1], models[2]
  step = make_step(policy, policy, _pm(scorer), config, RESPONSES)
  state, history = _run(step, models, with_anchor=True)
  assert abs(history[0][metric]) < 1e-4  # Anchor = policy at step 0.
  assert _differs(state.anchor_params, p_params)
  assert _differs(state.anchor_params, state.params)
  with pytest.raises(ValueError, match="anchor_params"):
    _run(step, models)


@pytest.mark.parametrize("make", [
    lambda: nash_md.NashMDConfig(beta=1.5),
    lambda: nash_md.NashMDConfig(beta=-0.1),
    lambda: nash_md.NashMDConfig(tau=-0.01),
    lambda: nash_ema.NashEMAConfig(decay=1.0),
    lambda: nash_ema.NashEMAConfig(decay=-0.5),
    lambda: rlhf.RLHFConfig(tau=-1.0),
    lambda: online_ipo.OnlineIPOConfig(tau=0.0),
    lambda: ipo_md.IPOMDConfig(beta=1.2),
    lambda: ipo_md.IPOMDConfig(tau=0.0),
    lambda: egpo.EGPOConfig(tau=-1.0),
    lambda: nash_prox.NashProxConfig(eta=0.0),
    lambda: nash_prox.NashProxConfig(inner_steps=0),
    lambda: mpo.MPOConfig(tau=0.0),
    lambda: mpo.MPOConfig(refresh_every=0),
    lambda: online.ResponseConfig(temperature=0.0),
])
def test_out_of_range_settings_are_config_errors(make):
  with pytest.raises(ConfigError):
    make()
