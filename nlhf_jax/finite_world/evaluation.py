"""Exact distances to the targets during an online run on a finite world.

Every evaluation teacher-forces each (prompt x, answer k) row of the
world's `outcomes` split through the policy π_θ and the reference μ, which
gives both models' exact outcome distributions (the "other" outcome takes
the rest: 1 − Σ_k p(k | x), computed in float64 and floored at
`ExactTargets.other_floor`),
then computes, with `targets`, from this μ:

  kl_to_target   KL_ρ(target ‖ π_θ), target = the algorithm's own exact
                 target (`targets` module docstring), ρ uniform on prompts;
  kl_to_nash     KL_ρ(π*_τ ‖ π_θ);
  kl_reference_to_target  KL_ρ(target ‖ μ) (the distance at the start);
  p_condorcet, p_borda    π_θ's mean probability of the prompts'
                 Condorcet / Borda winners (over prompts that have one);
  target_p_condorcet, target_p_borda  the same for the target;
  policy/<x>/<outcome>    π_θ(outcome | prompt x), every prompt, outcome;
  reference/<x>/<outcome> the same for μ.

Gin: `online_job.online_job.evaluation = @evaluation.ExactTargets()` and
`EVAL_EVERY` (TrainConfig.eval_every) steps between evaluations.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from nlhf_jax import errors
from nlhf_jax import losses
from nlhf_jax import train_state
from nlhf_jax.algorithms import egpo
from nlhf_jax.algorithms import ipo_md
from nlhf_jax.algorithms import mpo
from nlhf_jax.algorithms import nash_ema
from nlhf_jax.algorithms import nash_md
from nlhf_jax.algorithms import nash_prox
from nlhf_jax.algorithms import online_ipo
from nlhf_jax.algorithms import rlhf
from nlhf_jax.errors import ConfigError
from nlhf_jax.finite_world import data as data_lib
from nlhf_jax.finite_world import judge as judge_lib
from nlhf_jax.finite_world import population
from nlhf_jax.finite_world import targets
from nlhf_jax.models import t5
from nlhf_jax.tabular import simplex

# target(prefs, mu) -> (X, n), for one algorithm's config.
TargetFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def target_of(algorithm: Any, source: data_lib.FiniteWorldSource
              ) -> tuple[str, TargetFn]:
  """(name, target function of μ) of an online algorithm's config.

  Raises:
    ConfigError: no exact target is known for this algorithm.
  """
  tau = float(getattr(algorithm, "tau", np.nan))
  if isinstance(algorithm, nash_md.NashMDConfig) and algorithm.beta == 1.0:
    return "best response to μ", (
        lambda prefs, mu: targets.best_response_to_reference(prefs, mu, tau))
  if isinstance(algorithm, (nash_md.NashMDConfig, nash_ema.NashEMAConfig,
                            online_ipo.OnlineIPOConfig, ipo_md.IPOMDConfig,
                            egpo.EGPOConfig, nash_prox.NashProxConfig)):
    return "π*_τ", lambda prefs, mu: targets.regularized_nash(prefs, mu, tau)
  if isinstance(algorithm, mpo.MPOConfig):  # The unregularised game's.
    return "Nash equilibrium (τ = 0)", (
        lambda prefs, mu: targets.regularized_nash(prefs, mu, 0.0))
  if isinstance(algorithm, rlhf.RLHFConfig):
    reward = judge_lib.bradley_terry_table(source)
    return "μ exp(r/τ)", lambda prefs, mu: targets.rlhf_target(reward, mu,
                                                               tau)
  raise ConfigError(f"No exact finite-world target is known for "
                    f"{type(algorithm).__name__}; ExactTargets supports "
                    "Nash-MD-PG (any β), Nash-EMA-PG, Online IPO, IPO-MD, "
                    "EGPO, Nash Prox, MPO and RLHF.")


def outcome_distribution(logp_xk: np.ndarray,
                         other_floor: float = 1e-12) -> np.ndarray:
  """(X, K) answer log-probs -> (X, K + 1) with "other" = the rest.

  "other" is floored at `other_floor` (float32 log-probs can sum a hair
  above 1), and the result renormalised.
  """
  logp = logp_xk.astype(np.float64)
  other = -np.expm1(special.logsumexp(logp, axis=-1))
  probs = np.concatenate([np.exp(logp), np.maximum(other, other_floor)[:, None]
                          ], axis=-1)
  return probs / probs.sum(-1, keepdims=True)


def _mean_winner_probability(pi: np.ndarray, winners: list) -> float:
  rows = [(x, w) for x, w in enumerate(winners) if w is not None]
  if not rows:
    return float("nan")
  return float(np.mean([pi[x, w] for x, w in rows]))


def summarize_outcomes(world: population.World, target: TargetFn,
                       tau: float, policy_xk: np.ndarray,
                       reference_xk: np.ndarray,
                       other_floor: float = 1e-12) -> dict[str, float]:
  """The metrics of the module docstring from both models' log-probs."""
  prefs = world.preference()
  pi = outcome_distribution(policy_xk, other_floor)
  mu = outcome_distribution(reference_xk, other_floor)
  goal = target(prefs, mu)
  nash = targets.regularized_nash(prefs, mu, tau)
  kl = lambda p, q: float(np.mean(simplex.kl_divergence(p, q)))
  condorcet, borda = world.condorcet_winners(), world.borda_winners()
  out = {"kl_to_target": kl(goal, pi), "kl_to_nash": kl(nash, pi),
         "kl_reference_to_target": kl(goal, mu),
         "p_condorcet": _mean_winner_probability(pi, condorcet),
         "p_borda": _mean_winner_probability(pi, borda),
         "target_p_condorcet": _mean_winner_probability(goal, condorcet),
         "target_p_borda": _mean_winner_probability(goal, borda)}
  for x in range(len(world.prompts)):
    for k, name in enumerate(world.outcomes):
      out[f"policy/{x}/{name}"] = float(pi[x, k])
      out[f"reference/{x}/{name}"] = float(mu[x, k])
  return out


def _answer_logprobs(model: t5.T5, params: Any, batch: Mapping) -> jax.Array:
  """Teacher-forced log p(answer + EOS | prompt) per row, float32 [b]."""
  logits = model.apply({"params": params}, batch["encoder_input_tokens"],
                       batch["decoder_input_tokens"])
  targets_bt = batch["decoder_target_tokens"]
  weights = jnp.asarray(batch["decoder_loss_weights"], jnp.float32)
  return jnp.sum(losses.token_logprobs(logits, targets_bt) * weights, -1)


def _by_prompt_and_answer(values: np.ndarray, outputs: Mapping,
                          shape: tuple[int, int]) -> np.ndarray:
  table = np.full(shape, np.nan)
  table[outputs[data_lib.PROMPT_INDEX], outputs[data_lib.ANSWER_INDEX]] = values
  if np.isnan(table).any():
    raise ValueError("the evaluation missed some (prompt, answer) rows; "
                     "evaluate the whole outcomes split (EVAL_BATCHES = 0)")
  return table


@dataclasses.dataclass(frozen=True)
class ExactTargets:
  """The exact-target evaluation of an online run (module docstring).

  Attributes:
    other_floor: the smallest probability of the outcome "other", > 0
      (keeps every KL finite when float32 answer probabilities sum to 1).
  """

  other_floor: float = 1e-12

  def __post_init__(self):
    errors.check_positive(self, "other_floor", self.other_floor)

  def build(self, policy: t5.T5, algorithm: Any,
            data: Any) -> train_state.Evaluator:
    """The Evaluator of `algorithm`'s run on the finite world `data`.

    Raises:
      ConfigError: the data is not a FiniteWorldSource, or the algorithm
        has no known target.
    """
    if not isinstance(data, data_lib.FiniteWorldSource):
      raise ConfigError("ExactTargets evaluates runs on a finite-answer "
                        "world (data = @data.FiniteWorldSource()); got "
                        f"{type(data).__name__}")
    _, target = target_of(algorithm, data)
    world = data.world
    shape = (len(world.prompts), world.num_answers)

    def step(state, batch, frozen):
      return {"policy": _answer_logprobs(policy, state.params, batch),
              "reference": _answer_logprobs(policy, frozen.reference, batch),
              data_lib.PROMPT_INDEX: batch[data_lib.PROMPT_INDEX],
              data_lib.ANSWER_INDEX: batch[data_lib.ANSWER_INDEX]}

    def summarize(outputs):
      return summarize_outcomes(
          world, target, float(algorithm.tau),
          _by_prompt_and_answer(outputs["policy"], outputs, shape),
          _by_prompt_and_answer(outputs["reference"], outputs, shape),
          self.other_floor)

    return train_state.Evaluator(step=step, summarize=summarize,
                                 uses_frozen=True)
