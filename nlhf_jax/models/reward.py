"""The reward model's judge side: r(x, y) from a `T5Scorer`.

The scorer reads `[x ; " Summary:" y ; EOS]` (`packing.pack`; the prompt is
cut first when it does not fit) and returns the scalar reward r(x, y). The
Bradley–Terry training (`nlhf_jax.algorithms.reward_model`) and RLHF's
online step call `rewards`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from nlhf_jax import errors
from nlhf_jax.models import packing
from nlhf_jax.models import t5


@dataclasses.dataclass(frozen=True)
class RewardLayout:
  """Token layout of the reward model's encoder input.

  Attributes:
    length: packed encoder length (prompt is cut to fit).
    marker: token ids before the summary.
  """

  length: int
  marker: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class RewardLayoutConfig:
  """Text form of the layout (gin-bound)."""

  length: int = 576
  marker: str = " Summary:"

  def __post_init__(self):
    errors.check_at_least(self, "length", self.length, 2, integer=True)


def make_layout(config: RewardLayoutConfig, data: Any) -> RewardLayout:
  """Tokenises the marker with the data's vocabulary (`data.encode`)."""
  return RewardLayout(config.length, tuple(data.encode(config.marker)))


def rewards(model: t5.T5Scorer, params: Any, prompt_bt: jax.Array,
            summary_bt: jax.Array, layout: RewardLayout, *,
            enable_dropout: bool = False,
            rng: jax.Array | None = None) -> jax.Array:
  """r(x, y), float32 [b]."""
  tokens = packing.pack(prompt_bt, [summary_bt], [layout.marker],
                        layout.length)
  rngs = {"dropout": rng} if enable_dropout else None
  return model.apply({"params": params}, tokens,
                     enable_dropout=enable_dropout, rngs=rngs)
