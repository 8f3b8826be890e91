"""Nash-EMA-PG (paper §7, App. F.3): the opponent is an EMA of past policies.

Per step, y ~ π_θ, y' ~ π_θ̄ where θ̄ is an exponential moving average of the
policy parameters kept in the train state (and checkpointed with it):
θ̄ ← d·θ̄ + (1 − d)·θ after every update, θ̄ starting at the initial policy.
Scoring and the policy-gradient update are Nash-MD-PG's
(`nash_md.preference_update`). The paper's decays are 0.999 and 0.9995; d = 0
is self-play, d → 1 plays against the initial (SFT) policy.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax

from nlhf_jax import errors
from nlhf_jax import mixtures
from nlhf_jax import sampling
from nlhf_jax import stage_timing
from nlhf_jax.algorithms import nash_md
from nlhf_jax.algorithms import online
from nlhf_jax.judges import pairwise
from nlhf_jax.models import t5


@dataclasses.dataclass(frozen=True)
class NashEMAConfig:
  """Nash-EMA-PG hyper-parameters.

  Attributes:
    decay: EMA decay d ∈ [0, 1) of the opponent parameters.
    tau: KL-regularisation τ ≥ 0.
  """

  decay: float = 0.999
  tau: float = 0.008
  judge_kind: ClassVar[str] = "pairwise"

  def __post_init__(self):
    errors.check_in_range(self, "decay", self.decay, 0.0, 1.0,
                          high_inclusive=False)
    errors.check_non_negative(self, "tau", self.tau)


def make_train_step(policy: t5.T5, reference: t5.T5,
                    judge: pairwise.PairJudge, config: NashEMAConfig,
                    responses: online.ResponseConfig):
  """Returns step(state, batch, rng, frozen) -> (state, metrics).

  `state.ema_params` must be present (train with `with_ema=True`).
  """
  sampling_config = responses.sampling_config()

  def step(state, batch, rng, frozen):
    if state.ema_params is None:
      raise ValueError("Nash-EMA-PG needs a train state with ema_params.")
    prompts = batch["encoder_input_tokens"]
    rng_y, rng_opp = jax.random.split(rng)
    y = sampling.sample_mixture(
        policy, jax.lax.stop_gradient(state.params), reference,
        frozen.reference, prompts, rng_y, 0.0, sampling_config)
    y2 = sampling.sample(policy, state.ema_params, prompts, rng_opp,
                         sampling_config)
    y, y2 = stage_timing.mark("sampling", (y, y2))
    new_state, metrics = nash_md.preference_update(
        policy, judge, config.tau, state, prompts, y, y2, frozen)
    ema = mixtures.ema_update(new_state.ema_params, new_state.params,
                              config.decay)
    return new_state.replace(ema_params=ema), metrics

  return step
