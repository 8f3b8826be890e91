"""Pairwise preference model P(y ≻ y' | x) (NLHF App. G.1).

A `T5Scorer` reads the packed text `[x ; " Summary 1:" y ; " Summary 2:" y']`
(`packing.pack`; the prompt is cut first when it does not fit) and returns a
logit z(x, y, y') for "the first summary is better". The model is not
antisymmetric by construction, so

* training uses BOTH presentation orders of every comparison:
  L = ½ [BCE(z(x, a, b), l) + BCE(z(x, b, a), 1 − l)], l = 1 if a won;
* inference symmetrises: P(a ≻ b) = ½ (σ(z(x,a,b)) + 1 − σ(z(x,b,a))), so
  P(a ≻ b) + P(b ≻ a) = 1 exactly (`losses.symmetrized_preference`).

Batches use the pair layout of `data.feature_converters.PairFeatureConverter`
(`encoder_input_tokens` = prompt, `decoder_target_tokens_a/_b` = summaries,
`label` = 1 if summary a was preferred), optionally with `p_star` (the
synthetic world's exact population preference) for the evaluation.
Evaluation reports accuracy, log-loss and expected calibration error of the
symmetrised probability against the labels, and, when `p_star` is present,
the agreement with the Bayes decision 1[P* > ½] and the label ceiling
E[max(P*, 1 − P*)] that no model can beat on noisy labels.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from nlhf_jax import errors
from nlhf_jax import losses
from nlhf_jax import train_state
from nlhf_jax.algorithms import packing
from nlhf_jax.models import t5

Batch = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class PairLayout:
  """Token layout of the preference model's encoder input.

  Attributes:
    length: packed encoder length (prompt is cut to fit).
    first_marker: token ids before the first summary.
    second_marker: token ids before the second summary.
  """

  length: int
  first_marker: tuple[int, ...]
  second_marker: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LayoutConfig:
  """Text form of the layout (gin-bound); token ids come from the data.

  Attributes:
    length: packed encoder length.
    first_marker: text before the first (or only) summary.
    second_marker: text before the second summary (preference model).
  """

  length: int = 640
  first_marker: str = " Summary 1:"
  second_marker: str = " Summary 2:"

  def __post_init__(self):
    errors.check_at_least(self, "length", self.length, 2, integer=True)


def make_layout(config: LayoutConfig, data: Any) -> PairLayout:
  """Tokenises the markers with the data's vocabulary (`data.encode`)."""
  return PairLayout(config.length, tuple(data.encode(config.first_marker)),
                    tuple(data.encode(config.second_marker)))


def pair_inputs(prompt_bt: jax.Array, first_bt: jax.Array,
                second_bt: jax.Array, layout: PairLayout) -> jax.Array:
  """[x ; M1 first ; M2 second ; EOS] as int32 [b, layout.length]."""
  return packing.pack(prompt_bt, [first_bt, second_bt],
                      [layout.first_marker, layout.second_marker],
                      layout.length)


def both_order_logits(model: t5.T5Scorer, params: Any, prompt_bt: jax.Array,
                      a_bt: jax.Array, b_bt: jax.Array, layout: PairLayout,
                      *, enable_dropout: bool = False,
                      rng: jax.Array | None = None
                      ) -> tuple[jax.Array, jax.Array]:
  """Logits z(x, a, b) and z(x, b, a), [b] each, from one forward pass."""
  tokens = jnp.concatenate([pair_inputs(prompt_bt, a_bt, b_bt, layout),
                            pair_inputs(prompt_bt, b_bt, a_bt, layout)])
  rngs = {"dropout": rng} if enable_dropout else None
  z = model.apply({"params": params}, tokens, enable_dropout=enable_dropout,
                  rngs=rngs)
  n = prompt_bt.shape[0]
  return z[:n], z[n:]


def preference_probability(model: t5.T5Scorer, params: Any,
                           prompt_bt: jax.Array, a_bt: jax.Array,
                           b_bt: jax.Array, layout: PairLayout) -> jax.Array:
  """Symmetrised P(a ≻ b | x), float32 [b]; P(a≻b) + P(b≻a) == 1 exactly.

  This is the judge the online algorithms query with sampled responses
  (decoder-target layout: tokens, EOS, zero padding).
  """
  z_ab, z_ba = both_order_logits(model, params, prompt_bt, a_bt, b_bt,
                                 layout)
  return losses.symmetrized_preference(z_ab, z_ba)


def _pair(batch: Batch):
  return (batch["encoder_input_tokens"], batch["decoder_target_tokens_a"],
          batch["decoder_target_tokens_b"])


def make_train_step(model: t5.T5Scorer,
                    layout: PairLayout) -> train_state.StepFn:
  """Cross-entropy on both presentation orders (module docstring).

  Metrics: loss, accuracy (symmetrised P against labels), order_gap
  (mean |σ(z_ab) − (1 − σ(z_ba))|, how far the model is from being
  antisymmetric on its own).
  """

  def step(state, batch, rng):
    labels = jnp.asarray(batch["label"], jnp.float32)

    def loss_fn(params):
      z_ab, z_ba = both_order_logits(model, params, *_pair(batch), layout,
                                     enable_dropout=True, rng=rng)
      loss = 0.5 * (losses.preference_bce(z_ab, labels) +
                    losses.preference_bce(z_ba, 1.0 - labels))
      return loss.mean(), (z_ab, z_ba)

    (loss, (z_ab, z_ba)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    prob = losses.symmetrized_preference(z_ab, z_ba)
    gap = jnp.abs(jax.nn.sigmoid(z_ab) - jax.nn.sigmoid(-z_ba))
    metrics = {"loss": loss,
               "accuracy": losses.binary_accuracy(prob, labels).mean(),
               "order_gap": gap.mean()}
    return state.apply_gradients(grads), metrics

  return step


def summarize_pairwise(outputs: Mapping[str, np.ndarray],
                       num_bins: int = 10) -> dict[str, float]:
  """Accuracy, log-loss, ECE of `prob` vs `label`; Bayes agreement, ceiling.

  Args:
    outputs: 'prob' (P(a ≻ b)) and 'label' arrays [n]; optionally 'p_star'.
    num_bins: ECE bins.

  Returns:
    accuracy, log_loss, ece, examples; with p_star also bayes_agreement
    (1[prob > ½] == 1[P* > ½]) and ceiling (E[max(P*, 1 − P*)]).
  """
  prob, label = outputs["prob"], outputs["label"]
  out = {
      "accuracy": float(np.mean(losses.binary_accuracy(prob, label))),
      "log_loss": float(np.mean(losses.binary_log_loss(prob, label))),
      "ece": float(losses.expected_calibration_error(prob, label, num_bins)),
      "examples": float(len(prob)),
  }
  if "p_star" in outputs:
    p_star = outputs["p_star"]
    out["bayes_agreement"] = float(np.mean(
        losses.binary_accuracy(prob, (p_star > 0.5).astype(np.float32))))
    out["ceiling"] = float(np.mean(np.maximum(p_star, 1.0 - p_star)))
  return out


def eval_outputs(prob: jax.Array, batch: Batch) -> dict[str, jax.Array]:
  """Per-example evaluation outputs (p_star passed through if present)."""
  out = {"prob": prob, "label": jnp.asarray(batch["label"], jnp.float32)}
  if "p_star" in batch:
    out["p_star"] = jnp.asarray(batch["p_star"], jnp.float32)
  return out


def make_evaluator(model: t5.T5Scorer,
                   layout: PairLayout) -> train_state.Evaluator:
  """Symmetrised-probability evaluation (see `summarize_pairwise`)."""

  def step(state, batch):
    prob = preference_probability(model, state.params, *_pair(batch), layout)
    return eval_outputs(prob, batch)

  return train_state.Evaluator(step=step, summarize=summarize_pairwise)
