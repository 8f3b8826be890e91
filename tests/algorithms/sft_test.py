"""Tests for supervised fine-tuning: the loss formula and learning."""

import flax.linen as nn
import jax
import numpy as np
import optax

from nlhf_jax import checkpointing
from nlhf_jax import losses
from nlhf_jax import metrics as metrics_lib
from nlhf_jax import optimizers
from nlhf_jax import partitioning
from nlhf_jax import train_state as ts
from nlhf_jax import trainer
from nlhf_jax.algorithms import sft
from nlhf_jax.data import jsonl_sources
from nlhf_jax.jobs import supervised
from nlhf_jax.models import init as model_init
from nlhf_jax.models import t5
from nlhf_jax.testing import toy_data


def test_loss_is_mean_token_cross_entropy():
  cfg = t5.T5Config(vocab_size=64, d_model=16, num_heads=2, d_kv=8, d_ff=32,
                    num_encoder_layers=1, num_decoder_layers=1)
  model = t5.T5(cfg)
  batch = toy_data.ToySeq2SeqSource(
      num_examples=4, input_length=8, target_length=6,
      vocab_size=64).arrays("train")
  params = nn.unbox(jax.jit(model_init.init_fn(model, 0))())
  state = ts.TrainState.create(params, optax.sgd(0.0))
  step = jax.jit(sft.make_train_step(model))
  _, metrics = step(state, batch, jax.random.PRNGKey(0))
  logits = jax.jit(model.apply)({"params": params},
                                batch["encoder_input_tokens"],
                                batch["decoder_input_tokens"])
  seq = losses.sequence_logprobs(logits, batch["decoder_target_tokens"],
                                 batch["decoder_loss_weights"])
  want = -seq.sum() / batch["decoder_loss_weights"].sum()
  np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)


def test_sft_loss_falls_on_the_synthetic_world(world, small_model, tmp_path):
  data_dir, vocab = world
  data = jsonl_sources.SftJsonlSource(data_dir, vocab, input_length=128,
                                      target_length=40)
  config = trainer.TrainConfig(
      steps=40, batch_size=16, log_every=5, tensorboard=False,
      eval_batch_size=64,
      optimizer=optimizers.OptimizerConfig(learning_rate=1e-2),
      checkpoint=checkpointing.CheckpointConfig(every_steps=0))
  result = supervised.sft_job(model=small_model, mesh=partitioning.MeshConfig(),
                         train=config, data=data, workdir=str(tmp_path))
  records = metrics_lib.read_metrics(str(tmp_path), "train")
  first, last = records[0]["loss"], records[-1]["loss"]
  # Uniform predictions over 512 ids cost log(512) = 6.24 nats per token.
  assert first > 5.0
  assert last < 0.7 * first, (first, last)
  assert result.eval_metrics["loss"] < 0.7 * first
  assert result.eval_metrics["examples"] == 100
