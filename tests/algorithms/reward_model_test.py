"""Tests for the Bradley-Terry reward model."""

import flax.linen as nn
import jax
import numpy as np
import optax

from nlhf_jax import checkpointing
from nlhf_jax.data import jsonl_sources
from nlhf_jax import losses
from nlhf_jax import optimizers
from nlhf_jax import partitioning
from nlhf_jax import train_state as ts
from nlhf_jax import trainer
from nlhf_jax.algorithms import reward_model as rm
from nlhf_jax.jobs import supervised
from nlhf_jax.models import init as model_init
from nlhf_jax.models import packing
from nlhf_jax.models import reward
from nlhf_jax.models import t5

TINY = t5.T5Config(vocab_size=64, d_model=16, num_heads=2, d_kv=8, d_ff=32,
                   num_encoder_layers=1, num_decoder_layers=1)


def test_bradley_terry_step_matches_separate_rewards():
  rng = np.random.default_rng(0)
  n = 4
  batch = {"encoder_input_tokens": rng.integers(3, 64, (n, 8)),
           "decoder_target_tokens_a": rng.integers(3, 64, (n, 4)),
           "decoder_target_tokens_b": rng.integers(3, 64, (n, 4)),
           "label": np.array([1, 0, 1, 1])}
  layout = reward.RewardLayout(length=16, marker=(5,))
  model = t5.T5Scorer(TINY)
  params = nn.unbox(jax.jit(model_init.scorer_init_fn(model, 0))())
  # r(x, y) is the scorer applied to the packed [x ; marker ; y ; EOS].
  apply = jax.jit(model.apply)
  pack = lambda y: packing.pack(batch["encoder_input_tokens"], [y], [(5,)],
                                16)
  r_a = apply({"params": params}, pack(batch["decoder_target_tokens_a"]))
  r_b = apply({"params": params}, pack(batch["decoder_target_tokens_b"]))
  state = ts.TrainState.create(params, optax.sgd(0.0))
  _, metrics = jax.jit(rm.make_train_step(model, layout))(
      state, batch, jax.random.PRNGKey(0))
  want = losses.bradley_terry_loss(r_a, r_b, batch["label"]).mean()
  np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)


def test_reward_model_learns_the_synthetic_world(world, small_model,
                                                 tmp_path):
  data_dir, vocab = world
  data = jsonl_sources.PreferenceJsonlSource(
      data_dir, vocab, input_length=128, target_length=40, with_p_star=True)
  config = trainer.TrainConfig(
      steps=60, batch_size=16, log_every=20, tensorboard=False,
      eval_batch_size=200,
      optimizer=optimizers.OptimizerConfig(learning_rate=1e-2),
      checkpoint=checkpointing.CheckpointConfig(every_steps=0))
  result = supervised.scorer_job(model=small_model, mesh=partitioning.MeshConfig(),
                        train=config, data=data, workdir=str(tmp_path),
                        layout=reward.RewardLayoutConfig(length=160))
  metrics = result.eval_metrics
  print("reward model eval:", metrics)
  assert metrics["examples"] == 400
  assert metrics["accuracy"] > 0.6
  assert metrics["accuracy"] <= metrics["ceiling"] + 0.05
