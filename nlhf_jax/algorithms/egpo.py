"""EGPO (Zhou, Fazel and Du, COLM 2025): extragradient on the Online IPO loss.

One step from parameters θ (and optimizer state o):

  1. predictor: y, y' ~ π_θ, g = ∇L(θ; y, y'), (θ½, o½) = update(θ, o, g);
  2. corrector: y, y' ~ π_θ½, g½ = ∇L(θ½; y, y'), and the step applies g½
     from the snapshot: (θ⁺, o⁺) = update(θ, o, g½).

L is Online IPO's regression (h − (p − ½)/τ)² (`online_ipo.ipo_gradients`);
update is the run's optimizer. The snapshot (θ, o) lives only inside the
step, so the train state and its checkpoints are Online IPO's. A step costs
two samplings, two judgings and two gradients. Its exact form on a softmax
table is `tabular.ipo.egpo_extragradient` (linear last-iterate convergence
to π*_τ, also where plain descent on the same loss cycles).

Stage timing marks the predictor's sampling and judging; the corrector's
sampling, judging and both optimizer updates count as the update stage.
Metrics are the corrector's (the step that is kept), and `predictor_loss`.
Frozen: `Frozen(reference=μ params, judge=the judge's params)`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax

from nlhf_jax import errors
from nlhf_jax import stage_timing
from nlhf_jax.algorithms import online
from nlhf_jax.algorithms import online_ipo
from nlhf_jax.judges import pairwise
from nlhf_jax.models import t5


@dataclasses.dataclass(frozen=True)
class EGPOConfig:
  """EGPO hyper-parameters.

  Attributes:
    tau: regularisation τ > 0 of the IPO loss.
  """

  tau: float = 1.0
  judge_kind: ClassVar[str] = "pairwise"

  def __post_init__(self):
    errors.check_positive(self, "tau", self.tau)


def make_train_step(policy: t5.T5, reference: t5.T5,
                    judge: pairwise.PairJudge, config: EGPOConfig,
                    responses: online.ResponseConfig):
  """Returns step(state, batch, rng, frozen) -> (state, metrics)."""
  sampling_config = responses.sampling_config()

  def step(state, batch, rng, frozen):
    prompts = batch["encoder_input_tokens"]

    def sample(params, key):  # y, y' ~ π_params.
      return online.sample_pair(policy, params, reference, frozen.reference,
                                prompts, key, 0.0, 0.0, sampling_config)

    def gradients(params, y, y2):
      return online_ipo.ipo_gradients(policy, judge, config.tau, params,
                                      prompts, y, y2, frozen)

    rng_predictor, rng_corrector = jax.random.split(rng)
    y, y2 = stage_timing.mark("sampling", sample(state.params, rng_predictor))
    grads, predictor = gradients(state.params, y, y2)
    half = state.apply_gradients(grads)
    grads, metrics = gradients(half.params,
                               *sample(half.params, rng_corrector))
    metrics.update(predictor_loss=predictor["loss"],
                   generated_tokens=metrics["generated_tokens"] +
                   predictor["generated_tokens"])
    return state.apply_gradients(grads), metrics

  return step
