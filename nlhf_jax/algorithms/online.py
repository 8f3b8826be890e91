"""Building blocks shared by the online algorithms' train steps.

Nash-MD-PG, Nash-EMA-PG, RLHF and Online IPO all: sample responses from the
policy (and an opponent) inside the jitted step, recompute log π_θ of the
sampled tokens with gradients by teacher forcing, and report the same
per-step metrics. Frozen models (reference μ, preference model, reward
model) arrive as the step's `frozen` argument, a `train_state.Frozen`
(parameters by role), so they are sharded jit arguments rather than
baked-in constants.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from nlhf_jax import errors
from nlhf_jax import losses
from nlhf_jax import sampling
from nlhf_jax import train_state
from nlhf_jax.models import t5

Array = jax.Array
Batch = Mapping[str, Array]
Frozen = train_state.Frozen


@dataclasses.dataclass(frozen=True)
class ResponseConfig:
  """How responses are sampled during training (gin-bound).

  Attributes:
    max_decode_length: response length L (tokens, EOS included).
    temperature: sampling temperature (> 0 for policy-gradient training).
    top_k: optional top-k truncation.
    top_p: optional nucleus truncation.
  """

  max_decode_length: int = 48
  temperature: float = 1.0
  top_k: int | None = None
  top_p: float | None = None

  def __post_init__(self):
    errors.check_at_least(self, "max_decode_length", self.max_decode_length,
                          1, integer=True)
    errors.check_positive(self, "temperature", self.temperature,
                          hint="on-policy training samples")
    sampling.check_truncation(self, self.top_k, self.top_p)

  def sampling_config(self) -> sampling.SamplingConfig:
    return sampling.SamplingConfig(
        max_decode_length=self.max_decode_length,
        temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)


def sample_policy_and_mixture(policy: t5.T5, params: Any,
                              reference: t5.T5, reference_params: Any,
                              prompts_bt: Array, rng: Array, beta: Any,
                              config: sampling.SamplingConfig
                              ) -> tuple[sampling.SampleOutput,
                                         sampling.SampleOutput]:
  """y ~ π_θ and y' ~ π_θ^{1−β} μ^β in one batched decode of [x; x].

  Both halves run through the mixture sampler (β = 0 for y reproduces plain
  policy sampling exactly), which also records log μ of y's tokens for the
  KL terms. Sampling is not differentiated.
  """
  return sample_pair(policy, params, reference, reference_params, prompts_bt,
                     rng, 0.0, beta, config)


def sample_pair(policy: t5.T5, params: Any, reference: t5.T5,
                reference_params: Any, prompts_bt: Array, rng: Array,
                beta_first: Any, beta_second: Any,
                config: sampling.SamplingConfig
                ) -> tuple[sampling.SampleOutput, sampling.SampleOutput]:
  """y ~ π_θ^{1−β₁} μ^β₁ and y' ~ π_θ^{1−β₂} μ^β₂ in one decode of [x; x].

  Each model encodes x once for both halves (`copies=2`). Both record log μ
  of their tokens; sampling is not differentiated.
  """
  b = prompts_bt.shape[0]
  beta_rows = jnp.concatenate([jnp.full((b, 1), beta_first, jnp.float32),
                               jnp.full((b, 1), beta_second, jnp.float32)])
  out = sampling.sample_mixture(
      policy, jax.lax.stop_gradient(params), reference, reference_params,
      prompts_bt, rng, beta_rows, config, copies=2)
  first = jax.tree.map(lambda a: a[:b], out)
  second = jax.tree.map(lambda a: a[b:], out)
  return first, second


_NO_ANCHOR = ("This step needs a train state with anchor_params (its "
              "config's keeps_anchor; TrainState.create(with_anchor=True)).")


def sample_against_anchor(policy: t5.T5, params: Any, anchor_params: Any,
                          reference: t5.T5, reference_params: Any,
                          prompts_bt: Array, rng: Array, beta_second: Any,
                          config: sampling.SamplingConfig
                          ) -> tuple[sampling.SampleOutput,
                                     sampling.SampleOutput, Array]:
  """y ~ π_θ, y' ~ π_θ^{1−β} a^β and log a(y) for an anchor copy a.

  One decode of [x; x] with the anchor as the mixture's second model (β = 1:
  y' from the anchor, Nash Prox; β = 0: self-play, MPO), then μ teacher-
  forced on y, so that y's `reference_log_probs` are log μ as everywhere
  else. Returns (y, y', log a(y) [b, L] masked); nothing is differentiated.
  """
  if anchor_params is None:
    raise ValueError(_NO_ANCHOR)
  y, y2 = sample_pair(policy, params, policy, anchor_params, prompts_bt, rng,
                      0.0, beta_second, config)
  logp_anchor = y.reference_log_probs * y.mask
  logp_ref = jax.lax.stop_gradient(policy_logprobs(
      reference, reference_params, prompts_bt, y)[0])
  return y.replace(reference_log_probs=logp_ref), y2, logp_anchor


def refresh_anchor(state: train_state.TrainState,
                  period: int) -> train_state.TrainState:
  """The state with `anchor_params` ← `params` when `step` is a multiple of
  `period` (called after the update: the anchor becomes the iterate reached
  after every `period` updates)."""
  if state.anchor_params is None:
    raise ValueError(_NO_ANCHOR)
  refresh = state.step % period == 0
  anchor = jax.tree.map(lambda p, a: jnp.where(refresh, p, a), state.params,
                        state.anchor_params)
  return state.replace(anchor_params=anchor)


def sequence_kl(y: sampling.SampleOutput, logp_other_bt: Array) -> Array:
  """Mean over the batch of Σ_n log π_θ(y_n)/q(y_n) (y ~ π_θ): KL(π_θ, q)."""
  return jnp.mean(jnp.sum((y.policy_log_probs - logp_other_bt) * y.mask, -1))


def teacher_forced_logits(policy: t5.T5, params: Any, prompts_bt: Array,
                          tokens_bt: Array) -> Array:
  """Policy logits [b, L, v] for given responses (no dropout)."""
  return policy.apply({"params": params}, prompts_bt,
                      t5.shift_right(tokens_bt))


def token_entropy(logits_btv: Array, mask_bt: Array) -> Array:
  """Mean per-token entropy of softmax(logits) over masked positions."""
  logp = jax.nn.log_softmax(logits_btv.astype(jnp.float32), -1)
  ent_bt = -jnp.sum(jnp.exp(logp) * logp, -1)
  return jnp.sum(ent_bt * mask_bt) / jnp.maximum(jnp.sum(mask_bt), 1.0)


def response_metrics(y: sampling.SampleOutput, logp_bt: Array,
                     logp_ref_bt: Array, logits_btv: Array,
                     grads: Any) -> dict[str, Array]:
  """Metrics every online step reports, named for what they are."""
  mask = y.mask
  kl_b = jnp.sum((logp_bt - logp_ref_bt) * mask, -1)
  return {
      "kl_to_reference": jnp.mean(kl_b),
      "response_length": jnp.mean(y.lengths.astype(jnp.float32)),
      "policy_entropy": token_entropy(logits_btv, mask),
      "grad_norm": optax.global_norm(grads),
      "generated_tokens": jnp.sum(y.lengths).astype(jnp.float32),
  }


def policy_logprobs(policy: t5.T5, params: Any, prompts_bt: Array,
                    y: sampling.SampleOutput) -> tuple[Array, Array]:
  """(log π_θ(y_n | x, y_<n) [b, L] masked, logits [b, L, v])."""
  logits = teacher_forced_logits(policy, params, prompts_bt, y.tokens)
  return losses.token_logprobs(logits, y.tokens) * y.mask, logits
