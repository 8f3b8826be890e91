"""RLHF baseline: REINFORCE on a Bradley–Terry reward with a KL penalty.

Per step, y ~ π_θ(·|x); r = r(x, y) from the reward judge
(`nlhf_jax.judges`: the learned reward model, a host or JAX function); the
per-token advantage is A_n = (r − b) − τ Σ_{m≥n} log(π_θ(y_m)/μ(y_m)) with
the leave-one-out batch mean b_i = mean_{j≠i} r_j as baseline (unbiased);
loss −mean_b Σ_n A_n log π_θ(y_n|·). Paper: τ = 0.05 (swept over 0.01-0.2).
Frozen: `Frozen(reference=μ params, judge=the reward judge's params)`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from nlhf_jax import errors
from nlhf_jax import sampling
from nlhf_jax import stage_timing
from nlhf_jax.algorithms import online
from nlhf_jax.algorithms import policy_gradient as pg
from nlhf_jax.judges import pointwise
from nlhf_jax.models import t5


@dataclasses.dataclass(frozen=True)
class RLHFConfig:
  """RLHF hyper-parameters.

  Attributes:
    tau: KL-regularisation τ ≥ 0 (paper: 0.05).
  """

  tau: float = 0.05
  judge_kind: ClassVar[str] = "pointwise"

  def __post_init__(self):
    errors.check_non_negative(self, "tau", self.tau)


def leave_one_out_baseline(rewards_b: jax.Array) -> jax.Array:
  """b_i = (Σ_j r_j − r_i)/(n − 1) [b]; zero for a batch of one."""
  n = rewards_b.shape[0]
  if n == 1:
    return jnp.zeros_like(rewards_b)
  return (jnp.sum(rewards_b) - rewards_b) / (n - 1)


def make_train_step(policy: t5.T5, reference: t5.T5,
                    reward: pointwise.RewardJudge, config: RLHFConfig,
                    responses: online.ResponseConfig):
  """Returns step(state, batch, rng, frozen) -> (state, metrics).

  Metrics: loss, reward, kl_to_reference, response_length, policy_entropy,
  grad_norm, generated_tokens.
  """
  sampling_config = responses.sampling_config()

  def step(state, batch, rng, frozen):
    prompts = batch["encoder_input_tokens"]
    y = stage_timing.mark("sampling", sampling.sample_mixture(
        policy, jax.lax.stop_gradient(state.params), reference,
        frozen.reference, prompts, rng, 0.0, sampling_config))
    r, judge_metrics = stage_timing.mark("judging", pointwise.rewards(
        reward, frozen.judge, prompts, y.tokens))
    signal = r - leave_one_out_baseline(r)
    logp_ref = y.reference_log_probs

    def loss_fn(params):
      logp, logits = online.policy_logprobs(policy, params, prompts, y)
      adv = pg.regularised_advantages(signal, jax.lax.stop_gradient(logp),
                                      logp_ref, y.mask, config.tau)
      return pg.reinforce_loss(logp, adv, y.mask), (logp, logits)

    (loss, (logp, logits)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    metrics = online.response_metrics(
        y, jax.lax.stop_gradient(logp), logp_ref,
        jax.lax.stop_gradient(logits), grads)
    metrics.update(loss=loss, reward=jnp.mean(r), **judge_metrics)
    return state.apply_gradients(grads), metrics

  return step
