"""Online IPO (Calandriello et al., ICML 2024) on the Nash-MD machinery.

Per step, y, y' ~ π_θ (self-play sampling), p = P(y ≻ y' | x) from the judge
(`nlhf_jax.judges`), and the contrastive loss (h − (p − ½)/τ)² with
h = log π_θ(y)/μ(y) − log π_θ(y')/μ(y') on sequence log-probs, gradients
through both responses. Its expected update equals self-play Nash-MD-PG's
(β = 0) up to scale (paper.md §4.6).
Frozen: `Frozen(reference=μ params, judge=the judge's params)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from nlhf_jax import errors
from nlhf_jax import stage_timing
from nlhf_jax.algorithms import online
from nlhf_jax.algorithms import policy_gradient as pg
from nlhf_jax.judges import pairwise
from nlhf_jax.models import t5


@dataclasses.dataclass(frozen=True)
class OnlineIPOConfig:
  """Online IPO hyper-parameters.

  Attributes:
    tau: regularisation τ > 0 (Online IPO paper: 1.0).
  """

  tau: float = 1.0
  judge_kind: ClassVar[str] = "pairwise"

  def __post_init__(self):
    errors.check_positive(self, "tau", self.tau)


def ipo_gradients(policy: t5.T5, judge: pairwise.PairJudge, tau: float,
                  params: Any, prompts_bt: jax.Array, y: Any, y2: Any,
                  frozen: online.Frozen) -> tuple[Any, dict]:
  """(∇ of the IPO regression loss at `params`, metrics) for judged (y, y').

  Shared by Online IPO, IPO-MD and EGPO (they differ in the sampler and in
  where the gradient is taken and applied).
  """
  p, judge_metrics = stage_timing.mark("judging", pairwise.preference(
      judge, frozen.judge, prompts_bt, y.tokens, y2.tokens))

  def loss_fn(params):
    logp, logits = online.policy_logprobs(policy, params, prompts_bt, y)
    logp2, _ = online.policy_logprobs(policy, params, prompts_bt, y2)
    loss = pg.online_ipo_loss(
        logp.sum(-1), y.reference_log_probs.sum(-1), logp2.sum(-1),
        y2.reference_log_probs.sum(-1), p, tau)
    return loss, (logp, logits)

  (loss, (logp, logits)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(params)
  metrics = online.response_metrics(
      y, jax.lax.stop_gradient(logp), y.reference_log_probs,
      jax.lax.stop_gradient(logits), grads)
  metrics.update(loss=loss, preference_vs_opponent=jnp.mean(p),
                 **judge_metrics)
  return grads, metrics


def ipo_update(policy: t5.T5, judge: pairwise.PairJudge, tau: float,
               state: Any, prompts_bt: jax.Array, y: Any, y2: Any,
               frozen: online.Frozen) -> tuple[Any, dict]:
  """Judges (y, y') and takes the IPO regression step on both responses."""
  grads, metrics = ipo_gradients(policy, judge, tau, state.params,
                                 prompts_bt, y, y2, frozen)
  return state.apply_gradients(grads), metrics


def make_train_step(policy: t5.T5, reference: t5.T5,
                    judge: pairwise.PairJudge, config: OnlineIPOConfig,
                    responses: online.ResponseConfig):
  """Returns step(state, batch, rng, frozen) -> (state, metrics)."""
  sampling_config = responses.sampling_config()

  def step(state, batch, rng, frozen):
    prompts = batch["encoder_input_tokens"]
    y, y2 = stage_timing.mark("sampling", online.sample_policy_and_mixture(
        policy, state.params, reference, frozen.reference, prompts, rng,
        0.0, sampling_config))
    return ipo_update(policy, judge, config.tau, state, prompts, y, y2,
                      frozen)

  return step
