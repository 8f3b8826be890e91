"""Judges inside compiled online steps, on tiny real models and a real
vocabulary (the small synthetic world): every kind in a Nash-MD-PG step
(compiled once), the host judge equal to the same judge on the decoded
strings, exact ½ for a first-slot judge, errors naming a NaN or
out-of-range judge, and the host judge's step equal on a 2×2×2 mesh and on
one device."""

import dataclasses
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np
import optax
import pytest

from nlhf_jax import partitioning
from nlhf_jax.algorithms import nash_md
from nlhf_jax.algorithms import online
from nlhf_jax.algorithms import rlhf
from nlhf_jax.data import jsonl_sources
from nlhf_jax.errors import ConfigError
from nlhf_jax.jobs import judges as judge_configs
from nlhf_jax.judges import checks
from nlhf_jax.judges import host
from nlhf_jax.judges import pairwise
from nlhf_jax.judges import pointwise
from nlhf_jax.judges import text
from nlhf_jax.models import init as model_init
from nlhf_jax.models import preference
from nlhf_jax.models import reward
from nlhf_jax.models import t5
from nlhf_jax.train_state import Frozen
from nlhf_jax.train_state import TrainState

RESPONSES = online.ResponseConfig(max_decode_length=6)


@pytest.fixture(scope="module")
def world(small_world, small_model):
  """(data source, model config at the world's 400 pieces, batch of 8)."""
  data_dir, vocabulary = small_world
  data = jsonl_sources.SftJsonlSource(data_dir, vocabulary, input_length=48,
                                      target_length=8)
  batch = {k: v[:8] for k, v in data.arrays("train").items()}
  return data, dataclasses.replace(small_model, vocab_size=400), batch


def _mesh(shape, devices=None):
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices).reshape(shape), partitioning.MESH_AXES)


def _one_step(step, cfg, frozen_judge, batch, mesh, steps=1,
              tx=optax.adam(1e-2)):
  """Runs the jitted step on `mesh`; returns (state, metrics, traces)."""
  policy_params = nn.unbox(model_init.init_fn(t5.T5(cfg), 1)())
  state = TrainState.create(policy_params, tx)
  frozen = Frozen(reference=policy_params, judge=frozen_judge)
  traces = []

  def traced(*args):
    traces.append(1)
    return step(*args)

  state, frozen = jax.device_put((state, frozen),
                                 partitioning.replicated(mesh))
  batch = jax.device_put({"encoder_input_tokens":
                          batch["encoder_input_tokens"]},
                         partitioning.batch_sharding(mesh))
  with partitioning.activate(mesh):
    jitted = jax.jit(traced)
    history = []
    for i in range(steps):
      state, metrics = jitted(state, batch, jax.random.PRNGKey(i), frozen)
      history.append(jax.device_get(metrics))
  return state, history, len(traces)


def _nash(judge, cfg):
  return nash_md.make_train_step(t5.T5(cfg), t5.T5(cfg), judge,
                                 nash_md.NashMDConfig(beta=0.125), RESPONSES)


def test_every_judge_kind_in_a_compiled_nash_md_step(world):
  """One step whose judge averages every kind: the learned PM, a reward
  used pairwise, a JAX function and the host P* (an ensemble is the fifth
  kind). Each member's values are checked inside it."""
  data, cfg, batch = world
  mesh = _mesh((8, 1, 1))
  scorer = t5.T5Scorer(cfg)
  pm = pairwise.PreferenceModelJudge(
      scorer, preference.make_layout(preference.LayoutConfig(length=72),
                                     data))
  rm = pointwise.RewardModelJudge(
      scorer, reward.make_layout(reward.RewardLayoutConfig(length=64), data))

  def shorter_first(prompts, first, second):
    del prompts
    return jax.nn.sigmoid((jnp.sum(second > 0, -1) - jnp.sum(first > 0, -1))
                          .astype(jnp.float32))

  judge = pairwise.EnsembleJudge(
      (pm, pairwise.RewardDifferenceJudge(rm),
       pairwise.FunctionJudge(shorter_first),
       judge_configs.SyntheticPStar().build(data, mesh, "pairwise")),
      (0.25,) * 4)
  assert judge.name == ("ensemble(preference model, reward difference, "
                        "shorter_first, synthetic P*)")
  scorer_params = nn.unbox(pm.init_params())
  state, history, traces = _one_step(
      _nash(judge, cfg), cfg, (scorer_params, scorer_params, (), ()), batch,
      mesh, steps=2)
  assert traces == 1, "the step recompiled"
  assert int(state.step) == 2
  for metrics in history:
    assert all(np.all(np.isfinite(v)) for v in metrics.values()), metrics
    assert 0.0 <= metrics["preference_vs_opponent"] <= 1.0
    assert metrics[checks.METRIC_PREFIX + judge.name] == 0


def _decoded(data, batch, a, b):
  codec = judge_configs.text_codec(data, "test")
  lookup = judge_configs.prompt_lookup(data)
  prompts = [lookup[tuple(host.response_ids(r))]
             for r in batch["encoder_input_tokens"]]
  return prompts, codec.responses(a), codec.responses(b)


def test_host_p_star_in_the_step_equals_the_judge_on_decoded_strings(world):
  data, _, batch = world
  mesh = _mesh((8, 1, 1))
  judge = judge_configs.SyntheticPStar().build(data, mesh, "pairwise")
  targets = batch["decoder_target_tokens"]
  a, b = targets, np.roll(targets, 1, axis=0)
  with partitioning.activate(mesh):
    sharding = partitioning.batch_sharding(mesh)
    args = jax.device_put((batch["encoder_input_tokens"], a, b), sharding)
    inside, counts = jax.jit(
        lambda x, y, z: pairwise.preference(judge, (), x, y, z))(*args)
  assert float(counts[checks.METRIC_PREFIX + "synthetic P*"]) == 0
  prompts, first, second = _decoded(data, batch, a, b)
  outside = text.order_averaged(text.SyntheticJudge())(prompts, first, second)
  np.testing.assert_allclose(np.asarray(inside), outside, atol=1e-6)
  assert len(set(np.round(outside, 3))) > 2  # Not a constant judge.


@dataclasses.dataclass(frozen=True)
class ConstantJudge:
  """J ≡ its parameter, whatever the order: one compiled step serves every
  value (1: always prefers the first slot; NaN, 1.5, -0.5: broken)."""
  name: str = "constant judge"

  def init_params(self):
    return jnp.zeros(())

  def __call__(self, params, prompts, first, second):
    return jnp.full(prompts.shape[0], params)


def _host_metrics(metrics):
  return {k: float(np.asarray(v)) for k, v in metrics.items()}


@pytest.fixture(scope="module")
def constant_judge_step(world):
  """step(value) -> host metrics of one compiled Nash-MD-PG step."""
  data, cfg, batch = world
  mesh = _mesh((8, 1, 1))
  step = jax.jit(_nash(ConstantJudge(), cfg))
  policy_params = nn.unbox(model_init.init_fn(t5.T5(cfg), 1)())
  state = jax.device_put(TrainState.create(policy_params, optax.adam(1e-2)),
                         partitioning.replicated(mesh))
  prompts = jax.device_put(
      {"encoder_input_tokens": batch["encoder_input_tokens"]},
      partitioning.batch_sharding(mesh))

  def run(value):
    frozen = jax.device_put(Frozen(reference=state.params,
                                   judge=jnp.float32(value)),
                            partitioning.replicated(mesh))
    with partitioning.activate(mesh):
      _, metrics = step(state, prompts, jax.random.PRNGKey(0), frozen)
    return _host_metrics(metrics)

  return run, step


def test_a_first_slot_judge_gives_exactly_one_half(world,
                                                   constant_judge_step):
  run, _ = constant_judge_step
  assert run(1.0)["preference_vs_opponent"] == 0.5
  _, _, batch = world
  x = jnp.asarray(batch["encoder_input_tokens"])
  y = jnp.asarray(batch["decoder_target_tokens"])
  p, _ = jax.jit(lambda: pairwise.preference(ConstantJudge(), jnp.float32(1),
                                             x, y, y[::-1]))()
  np.testing.assert_array_equal(np.asarray(p), 0.5)


@pytest.mark.parametrize("value", [float("nan"), 1.5, -0.5])
def test_a_bad_judge_stops_the_run_naming_it(constant_judge_step, value):
  run, _ = constant_judge_step
  metrics = run(value)
  # Both orders of the 8 pairs are bad; the loss is not finite, so the
  # trainer's guard would discard the update.
  assert metrics[checks.METRIC_PREFIX + "constant judge"] == 16
  assert not np.isfinite(metrics["loss"])
  with pytest.raises(checks.JudgeOutputError,
                     match=r"Judge 'constant judge' returned 16 values .* at "
                     "step 7"):
    checks.raise_on_invalid(7, metrics)


def test_a_good_judge_counts_no_bad_values_and_compiles_once(
    constant_judge_step):
  run, step = constant_judge_step
  for value in (0.0, 0.7, 1.0 + 1e-7):  # Round-off above 1 is clipped.
    metrics = run(value)
    assert metrics[checks.METRIC_PREFIX + "constant judge"] == 0
    assert np.isfinite(metrics["loss"])
    checks.raise_on_invalid(1, metrics)  # Does not raise.
  assert step._cache_size() == 1  # pylint: disable=protected-access


def test_a_failing_host_judge_is_logged_and_named(world, caplog):
  data, _, batch = world

  def nan_judge(prompts, first, second):
    return [float("nan")] * len(prompts)

  def crashing_judge(prompts, first, second):
    raise RuntimeError("rater offline")

  x = jnp.asarray(batch["encoder_input_tokens"])
  y = jnp.asarray(batch["decoder_target_tokens"])
  for fn, cause in ((nan_judge, "returned nan"),
                    (crashing_judge, "rater offline")):
    judge = judge_configs.HostJudge(fn).build(data, None, "pairwise")
    p, counts = jax.jit(
        lambda: pairwise.preference(judge, (), x, y, y[::-1]))()
    assert np.all(np.isnan(np.asarray(p)))
    with pytest.raises(checks.JudgeOutputError, match=fn.__name__):
      checks.raise_on_invalid(3, _host_metrics(counts))
    assert any(fn.__name__ in r.getMessage() and cause in r.getMessage()
               for r in caplog.records), [r.getMessage()
                                          for r in caplog.records]


def test_host_judge_step_on_a_2x2x2_mesh_equals_one_device(world):
  data, cfg, batch = world
  results = []
  for shape, devices in (((2, 2, 2), None), ((1, 1, 1), jax.devices()[:1])):
    mesh = _mesh(shape, devices)
    judge = judge_configs.SyntheticPStar().build(data, mesh, "pairwise")
    # SGD: Adam's first step, lr·g/|g|, would magnify the last-bit
    # differences of a reduction order in a near-zero gradient.
    state, history, _ = _one_step(_nash(judge, cfg), cfg, (), batch, mesh,
                                  tx=optax.sgd(1e-2))
    results.append((jax.device_get(state.params), history[0]))
  (params8, metrics8), (params1, metrics1) = results
  for key in ("preference_vs_opponent", "loss", "kl_to_reference",
              "grad_norm"):
    np.testing.assert_allclose(metrics8[key], metrics1[key], rtol=1e-5,
                               atol=1e-6, err_msg=key)
  for a, b in zip(jax.tree.leaves(params8), jax.tree.leaves(params1)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_host_reward_in_a_compiled_rlhf_step(world):
  data, cfg, batch = world

  def word_count(prompts, responses):
    return [float(len(r.split())) for r in responses]

  judge = judge_configs.HostRewardFn(word_count).build(data, None,
                                                       "pointwise")
  step = rlhf.make_train_step(t5.T5(cfg), t5.T5(cfg), judge,
                              rlhf.RLHFConfig(), RESPONSES)
  _, history, traces = _one_step(step, cfg, (), batch, _mesh((8, 1, 1)))
  assert traces == 1 and np.isfinite(history[0]["reward"])


def test_judge_configs_refuse_what_cannot_work(world, tmp_path):
  data, cfg, _ = world
  with pytest.raises(ConfigError, match="no reward represents"):
    judge_configs.SyntheticPStar().build(data, None, "pointwise")
  no_vocab = types.SimpleNamespace(vocabulary="t5_default")
  with pytest.raises(ConfigError, match="needs the data's SentencePiece"):
    judge_configs.HostJudge(text.SyntheticJudge()).build(no_vocab, None,
                                                         "pairwise")
  with pytest.raises(ConfigError, match="needs the JSONL prompts"):
    judge_configs.SyntheticPStar().build(no_vocab, None, "pairwise")
  with pytest.raises(ConfigError, match="needs a reward"):
    judge_configs.JaxJudge(lambda x, a, b: a).build(data, None, "pointwise")
  with pytest.raises(ConfigError, match="JUDGE_DIR"):
    judge_configs.LearnedJudge(cfg, preference.LayoutConfig(),
                               str(tmp_path / "missing"))
  with pytest.raises(ConfigError, match="2 members but 1 weights"):
    judge_configs.Ensemble((judge_configs.SyntheticPStar(),) * 2, (1.0,))
