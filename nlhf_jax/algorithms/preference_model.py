"""Pairwise preference model P(y ≻ y' | x) (NLHF App. G.1).

A `T5Scorer` reads the packed text `[x ; " Summary 1:" y ; " Summary 2:" y']`
(`models.preference`; the prompt is cut first when it does not fit) and
returns a logit z(x, y, y') for "the first summary is better". The model
is not antisymmetric by construction, so

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

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from nlhf_jax import losses
from nlhf_jax import train_state
from nlhf_jax.models import preference
from nlhf_jax.models import t5

Batch = Mapping[str, jax.Array]


def _pair(batch: Batch):
  return (batch["encoder_input_tokens"], batch["decoder_target_tokens_a"],
          batch["decoder_target_tokens_b"])


def make_train_step(model: t5.T5Scorer,
                    layout: preference.PairLayout) -> train_state.StepFn:
  """Cross-entropy on both presentation orders (module docstring).

  Metrics: loss, accuracy (symmetrised P against labels), order_gap
  (mean |σ(z_ab) − (1 − σ(z_ba))|, how far the model is from being
  antisymmetric on its own).
  """

  def step(state, batch, rng):
    labels = jnp.asarray(batch["label"], jnp.float32)

    def loss_fn(params):
      z_ab, z_ba = preference.both_order_logits(model, params, *_pair(batch), layout,
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
                   layout: preference.PairLayout) -> train_state.Evaluator:
  """Symmetrised-probability evaluation (see `summarize_pairwise`)."""

  def step(state, batch):
    prob = preference.preference_probability(model, state.params, *_pair(batch), layout)
    return eval_outputs(prob, batch)

  return train_state.Evaluator(step=step, summarize=summarize_pairwise)
