"""Supervised fine-tuning of the policy on TL;DR reference summaries.

Teacher forcing: the decoder reads the targets shifted right and the loss is
the mean token cross-entropy over target tokens (EOS included),

  L = Σ_{b,t} w_bt · (−log π(y_bt | x_b, y_b,<t)) / Σ_{b,t} w_bt.

Batches use the SFT layout of `nlhf_jax.data.iterators` (seqio's
`EncDecFeatureConverter` names). The SFT policy is the initial policy and
the reference μ of every NLHF method (paper §8).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from nlhf_jax import losses
from nlhf_jax import train_state
from nlhf_jax.models import t5

Batch = Mapping[str, jax.Array]


def _token_stats(model: t5.T5, params: Any, batch: Batch, *,
                 enable_dropout: bool = False,
                 rng: jax.Array | None = None) -> dict[str, jax.Array]:
  """Per-example sums: cross-entropy, target tokens, correct argmaxes."""
  rngs = {"dropout": rng} if enable_dropout else None
  logits = model.apply({"params": params}, batch["encoder_input_tokens"],
                       batch["decoder_input_tokens"],
                       enable_dropout=enable_dropout, rngs=rngs)
  targets = batch["decoder_target_tokens"]
  weights = jnp.asarray(batch["decoder_loss_weights"], jnp.float32)
  ce_bt = losses.token_cross_entropy(logits, targets, weights)
  correct_bt = losses.token_is_top1(logits, targets) * weights
  return {"ce": ce_bt.sum(-1), "tokens": weights.sum(-1),
          "correct": correct_bt.sum(-1)}


def make_train_step(model: t5.T5) -> train_state.StepFn:
  """Teacher-forced cross-entropy step (dropout from the step RNG).

  Metrics: loss (mean token CE), token_accuracy.
  """

  def step(state, batch, rng):
    def loss_fn(params):
      stats = _token_stats(model, params, batch, enable_dropout=True,
                           rng=rng)
      tokens = jnp.maximum(stats["tokens"].sum(), 1.0)
      return stats["ce"].sum() / tokens, stats

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    accuracy = stats["correct"].sum() / jnp.maximum(stats["tokens"].sum(), 1)
    return state.apply_gradients(grads), {"loss": loss,
                                          "token_accuracy": accuracy}

  return step


def summarize(outputs: Mapping[str, np.ndarray]) -> dict[str, float]:
  """Token-weighted loss, perplexity and accuracy over the eval set."""
  tokens = max(float(outputs["tokens"].sum()), 1.0)
  loss = float(outputs["ce"].sum()) / tokens
  return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))),
          "token_accuracy": float(outputs["correct"].sum()) / tokens,
          "sequence_logprob": float(-outputs["ce"].mean()),
          "examples": float(len(outputs["ce"]))}


def make_evaluator(model: t5.T5) -> train_state.Evaluator:
  """Held-out cross-entropy, perplexity, token accuracy, sequence log-prob."""
  return train_state.Evaluator(
      step=lambda state, batch: _token_stats(model, state.params, batch),
      summarize=summarize)
