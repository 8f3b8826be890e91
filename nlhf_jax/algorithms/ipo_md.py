"""IPO-MD (Calandriello et al., ICML 2024): Online IPO's loss on two samples
of the token-level geometric mixture.

Per step, y, y' ~ π_θ^{1−β} μ^β (both from the mixture, decoded together),
p = P(y ≻ y' | x) from the judge, and the regression loss
(h − (p − ½)/τ)² with h = log π_θ(y)/μ(y) − log π_θ(y')/μ(y') on sequence
log-probs, gradients through both responses (`online_ipo.ipo_update`).
β = 0 is Online IPO. Its expected update on a softmax table is
`tabular.ipo.ipo_expected_gradient`: the fixed point is Nash-MD-PG's at the
same β (π ∝ μ exp(P ρ / τ), ρ the mixture), π*_τ at β = 0.
Frozen: `Frozen(reference=μ params, judge=the judge's params)`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from nlhf_jax import errors
from nlhf_jax import stage_timing
from nlhf_jax.algorithms import online
from nlhf_jax.algorithms import online_ipo
from nlhf_jax.judges import pairwise
from nlhf_jax.models import t5


@dataclasses.dataclass(frozen=True)
class IPOMDConfig:
  """IPO-MD hyper-parameters.

  Attributes:
    beta: the sampler's mixture weight β ∈ [0, 1] on μ (0: Online IPO).
    tau: regularisation τ > 0 (Online IPO paper: 1.0).
  """

  beta: float = 0.125
  tau: float = 1.0
  judge_kind: ClassVar[str] = "pairwise"

  def __post_init__(self):
    errors.check_in_range(self, "beta", self.beta, 0.0, 1.0)
    errors.check_positive(self, "tau", self.tau)


def make_train_step(policy: t5.T5, reference: t5.T5,
                    judge: pairwise.PairJudge, config: IPOMDConfig,
                    responses: online.ResponseConfig):
  """Returns step(state, batch, rng, frozen) -> (state, metrics).

  Metrics as Online IPO's: loss, preference_vs_opponent, kl_to_reference,
  response_length, policy_entropy, grad_norm, generated_tokens and the
  judge's checks.
  """
  sampling_config = responses.sampling_config()

  def step(state, batch, rng, frozen):
    prompts = batch["encoder_input_tokens"]
    y, y2 = stage_timing.mark("sampling", online.sample_pair(
        policy, state.params, reference, frozen.reference, prompts, rng,
        config.beta, config.beta, sampling_config))
    return online_ipo.ipo_update(policy, judge, config.tau, state, prompts,
                                 y, y2, frozen)

  return step
