"""Tests for the pairwise preference model."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from nlhf_jax import checkpointing
from nlhf_jax.data import jsonl_sources
from nlhf_jax import losses
from nlhf_jax import optimizers
from nlhf_jax import partitioning
from nlhf_jax import train_state as ts
from nlhf_jax import trainer
from nlhf_jax.algorithms import preference_model as pm
from nlhf_jax.jobs import supervised
from nlhf_jax.models import preference
from nlhf_jax.models import init as model_init
from nlhf_jax.models import t5

TINY = t5.T5Config(vocab_size=64, d_model=16, num_heads=2, d_kv=8, d_ff=32,
                   num_encoder_layers=1, num_decoder_layers=1)
LAYOUT = preference.PairLayout(length=24, first_marker=(5, 6), second_marker=(5, 7))


def _batch(seed=0, n=6):
  rng = np.random.default_rng(seed)
  def tokens(length, real):
    out = np.zeros((n, length), np.int32)
    out[:, :real] = rng.integers(3, 64, (n, real))
    out[:, real] = 1
    return out
  return {"encoder_input_tokens": tokens(10, 7),
          "decoder_target_tokens_a": tokens(5, 3),
          "decoder_target_tokens_b": tokens(5, 2),
          "label": rng.integers(0, 2, n).astype(np.int32)}


@pytest.fixture(scope="module")
def scorer():
  model = t5.T5Scorer(TINY)
  params = nn.unbox(jax.jit(model_init.scorer_init_fn(model, 0))())
  # A nonzero head makes the outputs depend on the input.
  params["score_head"]["bias"] = params["score_head"]["bias"] + 0.3
  return model, params


def test_symmetrised_probability_sums_to_one_exactly(scorer):
  model, params = scorer
  b = _batch()
  args = (b["encoder_input_tokens"], b["decoder_target_tokens_a"],
          b["decoder_target_tokens_b"])
  prob = jax.jit(lambda p, x, a, b: preference.preference_probability(
      model, p, x, a, b, LAYOUT))
  p_ab = prob(params, *args)
  p_ba = prob(params, args[0], args[2], args[1])
  assert np.all(np.asarray(p_ab + p_ba) == np.float32(1.0))
  # Without symmetrisation the raw model is not antisymmetric.
  z_ab, z_ba = jax.jit(lambda p, x, a, b: preference.both_order_logits(
      model, p, x, a, b, LAYOUT))(params, *args)
  raw = jax.nn.sigmoid(z_ab) + jax.nn.sigmoid(z_ba)
  assert np.abs(np.asarray(raw) - 1).max() > 1e-3


def test_train_loss_averages_both_presentation_orders(scorer):
  model, params = scorer
  b = _batch(1)
  state = ts.TrainState.create(params, optax.sgd(0.0))
  _, metrics = jax.jit(pm.make_train_step(model, LAYOUT))(
      state, b, jax.random.PRNGKey(0))
  first = preference.pair_inputs(b["encoder_input_tokens"],
                         b["decoder_target_tokens_a"],
                         b["decoder_target_tokens_b"], LAYOUT)
  second = preference.pair_inputs(b["encoder_input_tokens"],
                          b["decoder_target_tokens_b"],
                          b["decoder_target_tokens_a"], LAYOUT)
  apply = jax.jit(model.apply)
  z1 = apply({"params": params}, first)
  z2 = apply({"params": params}, second)
  label = b["label"].astype(np.float32)
  want = 0.5 * (losses.preference_bce(z1, label) +
                losses.preference_bce(z2, 1 - label)).mean()
  np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)
  # The first packed row: prompt, marker 1, summary a, marker 2, summary b.
  row = np.asarray(first[0])
  a = b["decoder_target_tokens_a"][0][:3]
  assert list(row[7:9]) == [5, 6] and list(row[9:12]) == list(a)


def test_summarize_pairwise_metrics():
  out = pm.summarize_pairwise({
      "prob": np.array([0.9, 0.2, 0.6, 0.5]),
      "label": np.array([1.0, 1.0, 0.0, 1.0]),
      "p_star": np.array([0.8, 0.3, 0.4, 0.6])})
  assert out["accuracy"] == pytest.approx((1 + 0 + 0 + 0.5) / 4)
  assert out["bayes_agreement"] == pytest.approx((1 + 1 + 0 + 0.5) / 4)
  assert out["ceiling"] == pytest.approx((0.8 + 0.7 + 0.6 + 0.6) / 4)
  assert 0 <= out["ece"] <= 0.5 and out["log_loss"] > 0


def test_preference_model_learns_the_synthetic_world(world, small_model,
                                                     tmp_path):
  data_dir, vocab = world
  data = jsonl_sources.PreferenceJsonlSource(
      data_dir, vocab, input_length=128, target_length=40, with_p_star=True)
  # 300 steps at learning rate 3e-3. At 1e-2 the accuracy hung on rounding:
  # 0.6675 with the suite's earlier XLA flags, 0.5775 at backend
  # optimisation level 2 and 0.595 at level 0 (the suite's now); at 3e-3 it
  # is 0.6675 at both levels (log loss 0.6482 both).
  config = trainer.TrainConfig(
      steps=300, batch_size=16, log_every=50, tensorboard=False,
      eval_batch_size=200,
      optimizer=optimizers.OptimizerConfig(learning_rate=3e-3),
      checkpoint=checkpointing.CheckpointConfig(every_steps=0))
  result = supervised.scorer_job(model=small_model, mesh=partitioning.MeshConfig(),
                        train=config, data=data, workdir=str(tmp_path),
                        layout=preference.LayoutConfig(length=192))
  metrics = result.eval_metrics
  print("preference model eval:", metrics)
  assert metrics["examples"] == 400
  # Annotator noise caps label accuracy at E[max(P*, 1-P*)] ~ 0.75.
  assert 0.7 < metrics["ceiling"] < 0.8
  assert metrics["accuracy"] > 0.6
  assert metrics["accuracy"] <= metrics["ceiling"] + 0.05
