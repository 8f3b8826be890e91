"""The preference model's judge side: P(y ≻ y' | x) from a `T5Scorer`.

The scorer reads the packed text `[x ; " Summary 1:" y ; " Summary 2:" y']`
(`packing.pack`; the prompt is cut first when it does not fit) and returns a
logit z(x, y, y') for "the first summary is better". The network is not
antisymmetric by construction, so inference symmetrises over presentation
order:

  P(a ≻ b | x) = ½ (σ(z(x, a, b)) + 1 − σ(z(x, b, a))),

so P(a ≻ b) + P(b ≻ a) = 1 exactly (`losses.symmetrized_preference`).
Training (both orders, `nlhf_jax.algorithms.preference_model`), the online
algorithms and evaluation all call the functions here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from nlhf_jax import errors
from nlhf_jax import losses
from nlhf_jax.models import packing
from nlhf_jax.models import t5


@dataclasses.dataclass(frozen=True)
class PairLayout:
  """Token layout of the preference model's encoder input.

  Attributes:
    length: packed encoder length (prompt is cut to fit).
    first_marker: token ids before the first summary.
    second_marker: token ids before the second summary.
  """

  length: int
  first_marker: tuple[int, ...]
  second_marker: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LayoutConfig:
  """Text form of the layout (gin-bound); token ids come from the data.

  Attributes:
    length: packed encoder length.
    first_marker: text before the first (or only) summary.
    second_marker: text before the second summary (preference model).
  """

  length: int = 640
  first_marker: str = " Summary 1:"
  second_marker: str = " Summary 2:"

  def __post_init__(self):
    errors.check_at_least(self, "length", self.length, 2, integer=True)


def make_layout(config: LayoutConfig, data: Any) -> PairLayout:
  """Tokenises the markers with the data's vocabulary (`data.encode`)."""
  return PairLayout(config.length, tuple(data.encode(config.first_marker)),
                    tuple(data.encode(config.second_marker)))


def pair_inputs(prompt_bt: jax.Array, first_bt: jax.Array,
                second_bt: jax.Array, layout: PairLayout) -> jax.Array:
  """[x ; M1 first ; M2 second ; EOS] as int32 [b, layout.length]."""
  return packing.pack(prompt_bt, [first_bt, second_bt],
                      [layout.first_marker, layout.second_marker],
                      layout.length)


def both_order_logits(model: t5.T5Scorer, params: Any, prompt_bt: jax.Array,
                      a_bt: jax.Array, b_bt: jax.Array, layout: PairLayout,
                      *, enable_dropout: bool = False,
                      rng: jax.Array | None = None
                      ) -> tuple[jax.Array, jax.Array]:
  """Logits z(x, a, b) and z(x, b, a), [b] each, from one forward pass."""
  tokens = jnp.concatenate([pair_inputs(prompt_bt, a_bt, b_bt, layout),
                            pair_inputs(prompt_bt, b_bt, a_bt, layout)])
  rngs = {"dropout": rng} if enable_dropout else None
  z = model.apply({"params": params}, tokens, enable_dropout=enable_dropout,
                  rngs=rngs)
  n = prompt_bt.shape[0]
  return z[:n], z[n:]


def preference_probability(model: t5.T5Scorer, params: Any,
                           prompt_bt: jax.Array, a_bt: jax.Array,
                           b_bt: jax.Array, layout: PairLayout) -> jax.Array:
  """Symmetrised P(a ≻ b | x), float32 [b]; P(a≻b) + P(b≻a) == 1 exactly.

  This is the judge the online algorithms query with sampled responses
  (decoder-target layout: tokens, EOS, zero padding).
  """
  z_ab, z_ba = both_order_logits(model, params, prompt_bt, a_bt, b_bt,
                                 layout)
  return losses.symmetrized_preference(z_ab, z_ba)
