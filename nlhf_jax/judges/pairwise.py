"""Pairwise judges inside the jitted online steps: P(y ≻ y' | x) per row.

A `PairJudge` maps token arrays to the probability that the first response
is preferred, in the order given:

  judge(params, prompts [n, Lx], first [n, L], second [n, L]) -> float32 [n]

(responses in the decoder-target layout: tokens, EOS, zero padding; `params`
the judge's frozen parameters, `()` for a judge without any). The online
steps never call a judge directly but through `preference`, which queries
both presentation orders in one call of 2n rows and averages them:

  P(a ≻ b | x) = ½ (J(x, a, b) + 1 − J(x, b, a))

(`losses.order_averaged_probability`), so P(a ≻ b) + P(b ≻ a) = 1 exactly
and a judge that always prefers the first slot gives exactly ½. Every raw
value is checked inside the step: a NaN or a value outside [0, 1] makes the
step's loss non-finite (the update is discarded) and is counted in a metric
that the trainer turns into a `checks.JudgeOutputError` naming the judge.

Kinds here (all pure JAX): the learned pairwise preference model
(`PreferenceModelJudge`), a Bradley–Terry reward used pairwise
(`RewardDifferenceJudge`, σ(r(x, a) − r(x, b))), any JAX function of the
token arrays (`FunctionJudge`) and a weighted average of judges
(`EnsembleJudge`). Python callables on decoded text are `host.HostPairJudge`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from nlhf_jax import losses
from nlhf_jax.judges import checks
from nlhf_jax.judges import pointwise
from nlhf_jax.models import init as model_init
from nlhf_jax.models import preference as pm_lib
from nlhf_jax.models import t5

Array = jax.Array
PyTree = Any


@runtime_checkable
class PairJudge(Protocol):
  """P(first ≻ second | prompt) from token arrays, one presentation order."""

  name: str

  def init_params(self) -> PyTree:
    """The judge's (boxed) parameters, for shapes and layouts; () if none."""

  def __call__(self, params: PyTree, prompts_bt: Array, first_bt: Array,
               second_bt: Array) -> Array:
    """float32 [n] of P(first_i ≻ second_i | prompts_i) in [0, 1]."""


def checked_call(judge: PairJudge, params: PyTree, prompts_bt: Array,
                 first_bt: Array, second_bt: Array
                 ) -> tuple[Array, dict[str, Array]]:
  """The judge's raw values, checked (`checks.check_values`), and counts."""
  raw = judge(params, prompts_bt, first_bt, second_bt)
  return checks.check_values(judge.name, jnp.asarray(raw, jnp.float32),
                             0.0, 1.0)


def preference(judge: PairJudge, params: PyTree, prompts_bt: Array,
               a_bt: Array, b_bt: Array) -> tuple[Array, dict[str, Array]]:
  """Order-averaged, checked P(a ≻ b | x): (float32 [n], judge metrics).

  Both orders go to the judge in one call of 2n rows ([x; x], [a; b],
  [b; a]), so a learned judge runs one forward pass. A NaN/inf or
  out-of-range value of the judge makes its row NaN (so the step's loss is
  not finite) and is counted in the returned metrics
  (`checks.METRIC_PREFIX` + judge name), which the trainer turns into a
  `checks.JudgeOutputError` naming the judge.
  """
  n = prompts_bt.shape[0]
  raw, counts = checked_call(judge, params,
                             jnp.concatenate([prompts_bt, prompts_bt]),
                             jnp.concatenate([a_bt, b_bt]),
                             jnp.concatenate([b_bt, a_bt]))
  return losses.order_averaged_probability(raw[:n], raw[n:]), counts


@dataclasses.dataclass(frozen=True)
class PreferenceModelJudge:
  """The learned pairwise preference model: J = σ(z(x, first, second)).

  Attributes:
    model: the T5 scorer.
    layout: its packed input layout.
    name: label in errors and reports.
    row_chunk: score the packed rows this many at a time (`lax.map` over
      chunks; the last one zero-padded) instead of all at once; None: all
      at once. A cache trick for XLA:CPU, where the attention scores of
      all 2n rows ([2n, h, length, length]) can outgrow the CPU's cache
      (`gin_configs/backends/cpu.gin`); same values up to rounding.
  """

  model: t5.T5Scorer
  layout: pm_lib.PairLayout
  name: str = "preference model"
  row_chunk: Optional[int] = None

  def init_params(self) -> PyTree:
    return model_init.scorer_init_fn(self.model, 0)()

  def __call__(self, params, prompts_bt, first_bt, second_bt):
    tokens = pm_lib.pair_inputs(prompts_bt, first_bt, second_bt, self.layout)
    score = lambda t: self.model.apply({"params": params}, t)
    n, chunk = tokens.shape[0], self.row_chunk
    if chunk is None or n <= chunk:
      z = score(tokens)
    else:
      padded = jnp.pad(tokens, ((0, -n % chunk), (0, 0)))
      z = jax.lax.map(score, padded.reshape(-1, chunk, tokens.shape[1]))
      z = z.reshape(-1)[:n]
    return jax.nn.sigmoid(z.astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class RewardDifferenceJudge:
  """A pointwise reward used pairwise: J = σ(r(x, first) − r(x, second)).

  Bradley–Terry's preference; transitive by construction, so it cannot
  represent a non-transitive population (what TRL's Nash-MD trainer did).

  Attributes:
    reward: the pointwise judge r.
    name: label in errors and reports.
  """

  reward: pointwise.RewardJudge
  name: str = "reward difference"

  def init_params(self) -> PyTree:
    return self.reward.init_params()

  def __call__(self, params, prompts_bt, first_bt, second_bt):
    n = prompts_bt.shape[0]
    r, _ = pointwise.rewards(self.reward, params,
                             jnp.concatenate([prompts_bt, prompts_bt]),
                             jnp.concatenate([first_bt, second_bt]))
    return jax.nn.sigmoid(r[:n] - r[n:])  # NaN stays NaN: reported.


@dataclasses.dataclass(frozen=True)
class FunctionJudge:
  """Any pure JAX function `fn(prompts, first, second) -> [n]` in [0, 1].

  Rule-based judges and tests; no parameters.

  Attributes:
    fn: the function (traced into the step).
    name: label in errors; defaults to the function's name.
  """

  fn: Callable[[Array, Array, Array], Array]
  name: str = ""

  def __post_init__(self):
    if not callable(self.fn):
      raise TypeError(f"FunctionJudge.fn must be callable, got {self.fn!r}")
    if not self.name:
      object.__setattr__(self, "name", getattr(self.fn, "__name__", "fn"))

  def init_params(self) -> PyTree:
    return ()

  def __call__(self, params, prompts_bt, first_bt, second_bt):
    del params
    return jnp.asarray(self.fn(prompts_bt, first_bt, second_bt), jnp.float32)


@dataclasses.dataclass(frozen=True)
class EnsembleJudge:
  """A weighted average Σ_i w_i J_i of judges (weights sum to 1).

  A member's bad value (NaN, or outside [0, 1]) makes the average NaN, so
  the check of `preference` reports the ensemble, whose default name lists
  its members. The parameters are the tuple of the members' parameters.

  Attributes:
    judges: the members.
    weights: one non-negative weight per member, summing to 1.
    name: label in errors; defaults to "ensemble(<member names>)".
  """

  judges: tuple[PairJudge, ...]
  weights: tuple[float, ...]
  name: str = ""

  def __post_init__(self):
    if not self.judges or len(self.weights) != len(self.judges):
      raise ValueError(f"EnsembleJudge: {len(self.judges)} judges and "
                       f"{len(self.weights)} weights; need one weight each")
    w = np.asarray(self.weights, np.float64)
    if np.any(w < 0) or not np.isclose(w.sum(), 1.0):
      raise ValueError(f"EnsembleJudge weights must be >= 0 and sum to 1, "
                       f"got {self.weights}")
    if not self.name:
      object.__setattr__(self, "name", "ensemble(" + ", ".join(
          j.name for j in self.judges) + ")")

  def init_params(self) -> PyTree:
    return tuple(j.init_params() for j in self.judges)

  def __call__(self, params, prompts_bt, first_bt, second_bt):
    total = 0.0
    for judge, weight, p in zip(self.judges, self.weights, params):
      raw, _ = checked_call(judge, p, prompts_bt, first_bt, second_bt)
      total += weight * raw
    return total
