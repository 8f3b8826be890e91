"""Nash Prox (Tiapkin, Calandriello, … Valko, Ménard, 2025), practical form.

Exact Nash Prox makes one proximal step per iteration k against the
previous iterate π_k (`tabular.prox.nash_prox`):

  π_{k+1} = argmax_π P(π ≻ π_k) − τ KL(π, μ) − (1/η) KL(π, π_k).

The deep step approximates each proximal step with `inner_steps` policy-
gradient steps against a frozen copy of π_k, kept in the train state as
`anchor_params` (checkpointed with it). Per step:

  1. y ~ π_θ and y' ~ π_k in one decode of [x; x] (π_k as the mixture's
     second model, β = 1), log π_k(y) from the same decode, log μ(y) by
     teacher forcing μ;
  2. p = P(y ≻ y' | x) from the judge;
  3. A_n = (p − ½) − τ Σ_{m≥n} log(π_θ/μ)(y_m) − (1/η) Σ_{m≥n}
     log(π_θ/π_k)(y_m)   (`policy_gradient.anchored_advantages`);
  4. the REINFORCE step, then π_k ← π_θ after every `inner_steps` updates.

Its exact form on a softmax table is `tabular.anchored.nash_prox_pg_ascent`
(fixed point π*_τ). Extra cost over Nash-MD-PG: the anchor copy of the
parameters, and one teacher-forced pass of μ.
Frozen: `Frozen(reference=μ params, judge=the judge's params)`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from nlhf_jax import errors
from nlhf_jax import stage_timing
from nlhf_jax.algorithms import nash_md
from nlhf_jax.algorithms import online
from nlhf_jax.judges import pairwise
from nlhf_jax.models import t5


@dataclasses.dataclass(frozen=True)
class NashProxConfig:
  """Nash Prox hyper-parameters.

  Attributes:
    tau: KL-regularisation τ ≥ 0 towards μ.
    eta: proximal step size η > 0 (KL weight 1/η towards π_k).
    inner_steps: policy-gradient steps per proximal step (≥ 1).
  """

  tau: float = 0.008
  eta: float = 125.0
  inner_steps: int = 10
  judge_kind: ClassVar[str] = "pairwise"
  keeps_anchor: ClassVar[bool] = True

  def __post_init__(self):
    errors.check_non_negative(self, "tau", self.tau)
    errors.check_positive(self, "eta", self.eta)
    errors.check_at_least(self, "inner_steps", self.inner_steps, 1,
                          integer=True)


def make_train_step(policy: t5.T5, reference: t5.T5,
                    judge: pairwise.PairJudge, config: NashProxConfig,
                    responses: online.ResponseConfig):
  """Returns step(state, batch, rng, frozen) -> (state, metrics).

  `state.anchor_params` must be present (`keeps_anchor`). Metrics are
  Nash-MD-PG's and `kl_to_anchor` (mean Σ_n log π_θ/π_k over y).
  """
  sampling_config = responses.sampling_config()

  def step(state, batch, rng, frozen):
    prompts = batch["encoder_input_tokens"]
    y, y2, logp_anchor = stage_timing.mark(
        "sampling", online.sample_against_anchor(
            policy, state.params, state.anchor_params, reference,
            frozen.reference, prompts, rng, 1.0, sampling_config))
    new_state, metrics = nash_md.preference_update(
        policy, judge, config.tau, state, prompts, y, y2, frozen,
        anchor=(logp_anchor, 1.0 / config.eta))
    metrics["kl_to_anchor"] = online.sequence_kl(y, logp_anchor)
    return online.refresh_anchor(new_state, config.inner_steps), metrics

  return step
