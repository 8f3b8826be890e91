"""Pointwise judges (rewards) inside the jitted RLHF step: r(x, y) per row.

A `RewardJudge` maps token arrays to one finite scalar per response:

  reward(params, prompts [n, Lx], responses [n, L]) -> float32 [n]

(responses in the decoder-target layout; `params` frozen, `()` if none).
The step calls it through `rewards`, which counts NaN/inf rewards in a
metric that the trainer turns into a `checks.JudgeOutputError` naming the
judge.
Kinds: the learned Bradley–Terry reward model (`RewardModelJudge`) and any
JAX function (`FunctionReward`); host rewards on decoded text are
`host.HostReward`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from nlhf_jax.judges import checks
from nlhf_jax.models import init as model_init
from nlhf_jax.models import reward as rm_lib
from nlhf_jax.models import t5

Array = jax.Array
PyTree = Any


@runtime_checkable
class RewardJudge(Protocol):
  """r(x, y) from token arrays."""

  name: str

  def init_params(self) -> PyTree:
    """The judge's (boxed) parameters, for shapes and layouts; () if none."""

  def __call__(self, params: PyTree, prompts_bt: Array,
               responses_bt: Array) -> Array:
    """float32 [n] of r(prompts_i, responses_i)."""


def rewards(judge: RewardJudge, params: PyTree, prompts_bt: Array,
            responses_bt: Array) -> tuple[Array, dict[str, Array]]:
  """The judge's rewards, float32 [n], and the count of non-finite ones.

  A non-finite reward becomes NaN (the step's loss is then not finite) and
  is counted in the returned metrics (`checks.check_values`).
  """
  r = jnp.asarray(judge(params, prompts_bt, responses_bt), jnp.float32)
  return checks.check_values(judge.name, r)


@dataclasses.dataclass(frozen=True)
class RewardModelJudge:
  """The learned Bradley–Terry reward model r(x, y).

  Attributes:
    model: the T5 scorer.
    layout: its packed input layout.
    name: label in errors and reports.
  """

  model: t5.T5Scorer
  layout: rm_lib.RewardLayout
  name: str = "reward model"

  def init_params(self) -> PyTree:
    return model_init.scorer_init_fn(self.model, 0)()

  def __call__(self, params, prompts_bt, responses_bt):
    return rm_lib.rewards(self.model, params, prompts_bt, responses_bt,
                          self.layout)


@dataclasses.dataclass(frozen=True)
class FunctionReward:
  """Any pure JAX function `fn(prompts, responses) -> [n]`; no parameters.

  Attributes:
    fn: the function (traced into the step).
    name: label in errors; defaults to the function's name.
  """

  fn: Callable[[Array, Array], Array]
  name: str = ""

  def __post_init__(self):
    if not callable(self.fn):
      raise TypeError(f"FunctionReward.fn must be callable, got {self.fn!r}")
    if not self.name:
      object.__setattr__(self, "name", getattr(self.fn, "__name__", "fn"))

  def init_params(self) -> PyTree:
    return ()

  def __call__(self, params, prompts_bt, responses_bt):
    del params
    return jnp.asarray(self.fn(prompts_bt, responses_bt), jnp.float32)
