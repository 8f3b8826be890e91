"""A finite-answer world's exact judges, as JAX functions on tokens.

  exact_preference  P*_x(o(y) ≻ o(y')) (`population`), for the pairwise
                    algorithms: gin `JUDGE = @judges.JaxJudge()` with
                    `judges.JaxJudge.fn = @judge.exact_preference()`.
  exact_reward      the Bradley–Terry reward r_x(o(y)) RLHF's reward model
                    converges to (`targets.bradley_terry_reward`; its
                    comparisons are pairs of offered answers drawn
                    uniformly, labelled by P*), for RLHF:
                    `@judges.JaxReward()`.

The prompt x is found by exact match of the prompt tokens against the
world's prompt rows, the outcome by `tokens.outcomes`. A prompt that is
not the world's gives NaN, which the step's judge check reports by name
(`nlhf_jax.judges.checks`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nlhf_jax.finite_world import data as data_lib
from nlhf_jax.finite_world import targets
from nlhf_jax.finite_world import tokens

Array = jax.Array


def _lookup(source: data_lib.FiniteWorldSource, table: np.ndarray,
            prompts_bt: Array, *responses_bt: Array) -> Array:
  """table[x, o(y_1), ...] per row; NaN for a prompt not in the world."""
  rows = source.prompt_rows()
  if prompts_bt.shape[-1] != rows.shape[-1]:
    raise ValueError(f"prompts have {prompts_bt.shape[-1]} tokens but the "
                     f"world's rows {rows.shape[-1]}: use the same "
                     "FiniteWorldSource.input_length")
  x = tokens.row_index(prompts_bt, rows)
  answers = source.answer_rows()
  index = (jnp.maximum(x, 0),) + tuple(tokens.outcomes(r, answers)
                                       for r in responses_bt)
  values = jnp.asarray(table, jnp.float32)[index]
  return jnp.where(x >= 0, values, jnp.nan)


def exact_preference(source: data_lib.FiniteWorldSource
                     ) -> Callable[[Array, Array, Array], Array]:
  """fn(prompts [b, Lp], first [b, L], second [b, L]) -> P* [b]."""
  prefs = source.world.preference()

  def p_star(prompts_bt, first_bt, second_bt):
    return _lookup(source, prefs, prompts_bt, first_bt, second_bt)

  p_star.__name__ = f"exact P* of {source.world.name}"
  return p_star


def bradley_terry_table(source: data_lib.FiniteWorldSource) -> np.ndarray:
  """r_x(o), (X, K + 1): the fit on uniform pairs of offered answers."""
  offered = source.world.offered_mask()
  return targets.bradley_terry_reward(source.world.preference(),
                                      targets.uniform_offered(offered),
                                      offered)


def exact_reward(source: data_lib.FiniteWorldSource
                 ) -> Callable[[Array, Array], Array]:
  """fn(prompts [b, Lp], responses [b, L]) -> r_x(o(y)) [b]."""
  table = bradley_terry_table(source)

  def reward(prompts_bt, responses_bt):
    return _lookup(source, table, prompts_bt, responses_bt)

  reward.__name__ = f"Bradley-Terry reward of {source.world.name}"
  return reward
