"""Bradley-Terry reward model r(x, y) for the RLHF baseline (NLHF App. G.1).

A `T5Scorer` reads `[x ; " Summary:" y ; EOS]` (`packing.pack`) and returns
r(x, y). With P_BT(a ≻ b | x) = σ(r(x, a) − r(x, b)) the loss is the BCE of
that probability against the human label (`losses.bradley_terry_loss`).
P_BT is antisymmetric by construction, so no order symmetrisation is
needed. Batches use the same pair layout as the preference model; the
evaluation reports the same metrics (accuracy, log-loss, ECE; Bayes
agreement and ceiling when `p_star` is present), so the two can be compared
side by side.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from nlhf_jax import errors
from nlhf_jax import losses
from nlhf_jax import train_state
from nlhf_jax.algorithms import packing
from nlhf_jax.algorithms import preference_model
from nlhf_jax.models import t5

Batch = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class RewardLayout:
  """Token layout of the reward model's encoder input.

  Attributes:
    length: packed encoder length (prompt is cut to fit).
    marker: token ids before the summary.
  """

  length: int
  marker: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class RewardLayoutConfig:
  """Text form of the layout (gin-bound)."""

  length: int = 576
  marker: str = " Summary:"

  def __post_init__(self):
    errors.check_at_least(self, "length", self.length, 2, integer=True)


def make_layout(config: RewardLayoutConfig, data: Any) -> RewardLayout:
  return RewardLayout(config.length, tuple(data.encode(config.marker)))


def rewards(model: t5.T5Scorer, params: Any, prompt_bt: jax.Array,
            summary_bt: jax.Array, layout: RewardLayout, *,
            enable_dropout: bool = False,
            rng: jax.Array | None = None) -> jax.Array:
  """r(x, y), float32 [b]."""
  tokens = packing.pack(prompt_bt, [summary_bt], [layout.marker],
                        layout.length)
  rngs = {"dropout": rng} if enable_dropout else None
  return model.apply({"params": params}, tokens,
                     enable_dropout=enable_dropout, rngs=rngs)


def _pair_rewards(model, params, batch, layout, **kw):
  """r(x, a), r(x, b) from one forward pass over both summaries."""
  prompt = batch["encoder_input_tokens"]
  both = rewards(model, params, jnp.concatenate([prompt, prompt]),
                 jnp.concatenate([batch["decoder_target_tokens_a"],
                                  batch["decoder_target_tokens_b"]]),
                 layout, **kw)
  n = prompt.shape[0]
  return both[:n], both[n:]


def make_train_step(model: t5.T5Scorer,
                    layout: RewardLayout) -> train_state.StepFn:
  """Bradley-Terry step. Metrics: loss, accuracy, reward_mean, reward_std."""

  def step(state, batch, rng):
    labels = jnp.asarray(batch["label"], jnp.float32)

    def loss_fn(params):
      r_a, r_b = _pair_rewards(model, params, batch, layout,
                               enable_dropout=True, rng=rng)
      return losses.bradley_terry_loss(r_a, r_b, labels).mean(), (r_a, r_b)

    (loss, (r_a, r_b)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    prob = jax.nn.sigmoid(r_a - r_b)
    both = jnp.concatenate([r_a, r_b])
    metrics = {"loss": loss,
               "accuracy": losses.binary_accuracy(prob, labels).mean(),
               "reward_mean": both.mean(), "reward_std": both.std()}
    return state.apply_gradients(grads), metrics

  return step


def make_evaluator(model: t5.T5Scorer,
                   layout: RewardLayout) -> train_state.Evaluator:
  """P_BT(a ≻ b) = σ(r_a − r_b) against the labels (pairwise metrics)."""

  def step(state, batch):
    r_a, r_b = _pair_rewards(model, state.params, batch, layout)
    return preference_model.eval_outputs(jax.nn.sigmoid(r_a - r_b), batch)

  return train_state.Evaluator(
      step=step, summarize=preference_model.summarize_pairwise)
