"""MPO, magnetic preference optimisation (Wang et al., ICLR 2025).

MPO's iteration t maximises

  P(π ≻ π_t) − τ KL(π, magnet) − (1/η) KL(π, π_t),   magnet ← π every K,

i.e. self-play regularised towards a *magnet* that is refreshed to the
current policy on a schedule (its first value is μ), and converges in the
last iterate to an equilibrium of the unregularised game
(`tabular.prox.magnetic_preference_optimization`). The deep step takes one
policy-gradient step per t: the term towards π_t has zero gradient at
π_θ = π_t, so the optimizer's step size plays η. The magnet is kept in the
train state as `anchor_params` (checkpointed with it). Per step:

  1. y, y' ~ π_θ in one decode of [x; x] with the magnet as the mixture's
     second model (β = 0), which also gives log magnet(y); log μ(y) by
     teacher forcing μ, for the reported KL;
  2. p = P(y ≻ y' | x);
  3. A_n = (p − ½) − τ Σ_{m≥n} log(π_θ/magnet)(y_m);
  4. the REINFORCE step, then magnet ← π_θ after every `refresh_every`
     updates.

COMAL's anchor loop (solve the τ-regularised game against an anchor with an
inner solver, then anchor ← solution) is this step with self-play PG as the
inner solver and `refresh_every` its number of inner steps. The exact form
on a softmax table is `tabular.anchored.mpo_pg_ascent`.
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
class MPOConfig:
  """MPO hyper-parameters.

  Attributes:
    tau: the magnet's KL weight τ > 0.
    refresh_every: updates between magnet refreshes K (≥ 1).
  """

  tau: float = 0.008
  refresh_every: int = 100
  judge_kind: ClassVar[str] = "pairwise"
  keeps_anchor: ClassVar[bool] = True

  def __post_init__(self):
    errors.check_positive(self, "tau", self.tau)
    errors.check_at_least(self, "refresh_every", self.refresh_every, 1,
                          integer=True)


def make_train_step(policy: t5.T5, reference: t5.T5,
                    judge: pairwise.PairJudge, config: MPOConfig,
                    responses: online.ResponseConfig):
  """Returns step(state, batch, rng, frozen) -> (state, metrics).

  `state.anchor_params` (the magnet) must be present (`keeps_anchor`).
  Metrics are Nash-MD-PG's and `kl_to_magnet`.
  """
  sampling_config = responses.sampling_config()

  def step(state, batch, rng, frozen):
    prompts = batch["encoder_input_tokens"]
    y, y2, logp_magnet = stage_timing.mark(
        "sampling", online.sample_against_anchor(
            policy, state.params, state.anchor_params, reference,
            frozen.reference, prompts, rng, 0.0, sampling_config))
    new_state, metrics = nash_md.preference_update(
        policy, judge, 0.0, state, prompts, y, y2, frozen,
        anchor=(logp_magnet, config.tau))
    metrics["kl_to_magnet"] = online.sequence_kl(y, logp_magnet)
    return online.refresh_anchor(new_state, config.refresh_every), metrics

  return step
