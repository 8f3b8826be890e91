"""Nash-MD-PG (paper §7, App. F.3), with self-play (β=0) and best response (β=1).

One jitted, sharded step per batch of prompts x:

  1. y ~ π_θ(·|x) and y' ~ π_θ^{1−β} μ^β (token-level geometric mixture),
     decoded together; no gradient flows through either sample.
  2. p = P(y ≻ y' | x) from the judge (`nlhf_jax.judges`: the learned
     preference model, the exact P*, any function), averaged over
     presentation order and checked.
  3. A_n = (p − ½) − τ Σ_{m≥n} log(π_θ(y_m|·)/μ(y_m|·))   (stop-gradient)
  4. loss = −mean_b Σ_n A_n log π_θ(y_n | x, y_<n); one optimizer step.

β = 0 is self-play (opponent = current policy), β = 1 best response against
the reference μ (the SFT model). Frozen parameters come in as
`Frozen(reference=μ params, judge=the judge's params, () if none)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp

from nlhf_jax import errors
from nlhf_jax import stage_timing
from nlhf_jax.algorithms import online
from nlhf_jax.algorithms import policy_gradient as pg
from nlhf_jax.judges import pairwise
from nlhf_jax.models import t5


@dataclasses.dataclass(frozen=True)
class NashMDConfig:
  """Nash-MD-PG hyper-parameters (paper defaults).

  Attributes:
    beta: mixture coefficient β ∈ [0, 1] of the opponent π^{1−β} μ^β.
    tau: KL-regularisation τ ≥ 0 (paper: 0.008).
  """

  beta: float = 0.125
  tau: float = 0.008
  judge_kind: ClassVar[str] = "pairwise"

  def __post_init__(self):
    errors.check_in_range(self, "beta", self.beta, 0.0, 1.0)
    errors.check_non_negative(self, "tau", self.tau)


def preference_update(policy: t5.T5, judge: pairwise.PairJudge, tau: float,
                      state: Any, prompts_bt: jax.Array, y: Any, y2: Any,
                      frozen: online.Frozen,
                      anchor: Optional[tuple[jax.Array, float]] = None
                      ) -> tuple[Any, dict]:
  """Scores (y, y') with the judge and takes the PG step.

  Shared by Nash-MD-PG, Nash-EMA-PG, Nash Prox and MPO (they differ in y'
  and in the anchor). `anchor` = (log a(y) [b, L], λ) adds −λ KL(π, a) to
  the objective (`pg.anchored_advantages`); None: no anchor term.
  """
  p, judge_metrics = stage_timing.mark("judging", pairwise.preference(
      judge, frozen.judge, prompts_bt, y.tokens, y2.tokens))
  logp_ref = y.reference_log_probs

  def loss_fn(params):
    logp, logits = online.policy_logprobs(policy, params, prompts_bt, y)
    signal, logp_const = pg.nash_md_signal(p), jax.lax.stop_gradient(logp)
    if anchor is None:
      adv = pg.regularised_advantages(signal, logp_const, logp_ref, y.mask,
                                      tau)
    else:
      adv = pg.anchored_advantages(signal, logp_const, logp_ref, anchor[0],
                                   y.mask, tau, anchor[1])
    return pg.reinforce_loss(logp, adv, y.mask), (logp, logits)

  (loss, (logp, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  metrics = online.response_metrics(y, jax.lax.stop_gradient(logp), logp_ref,
                                    jax.lax.stop_gradient(logits), grads)
  metrics.update(loss=loss, preference_vs_opponent=jnp.mean(p),
                 opponent_length=jnp.mean(y2.lengths.astype(jnp.float32)),
                 generated_tokens=metrics["generated_tokens"] +
                 jnp.sum(y2.lengths).astype(jnp.float32), **judge_metrics)
  return state.apply_gradients(grads), metrics


def make_train_step(policy: t5.T5, reference: t5.T5,
                    judge: pairwise.PairJudge, config: NashMDConfig,
                    responses: online.ResponseConfig):
  """Returns step(state, batch, rng, frozen) -> (state, metrics).

  Args:
    policy: the policy network π_θ (its params are `state.params`).
    reference: the reference network μ (params in `frozen.reference`).
    judge: the pairwise judge (its params are `frozen.judge`).
    config: β and τ.
    responses: sampling settings for y and y'.

  Metrics: loss, preference_vs_opponent (mean p), kl_to_reference,
  response_length, opponent_length, policy_entropy, grad_norm,
  generated_tokens, and invalid_judge_values/<judge name> (`judges.checks`).
  """
  sampling_config = responses.sampling_config()

  def step(state, batch, rng, frozen):
    prompts = batch["encoder_input_tokens"]
    y, y2 = stage_timing.mark("sampling", online.sample_policy_and_mixture(
        policy, state.params, reference, frozen.reference, prompts, rng,
        config.beta, sampling_config))
    return preference_update(policy, judge, config.tau, state, prompts, y,
                             y2, frozen)

  return step
