"""Parameter initialisers of the T5 networks and the vocabulary check.

These are model concerns shared by the jobs (which build the train state),
`aot` (abstract shapes), evaluation (restoring checkpoints) and the
benchmarks. Each initialiser returns a zero-argument function that builds
the logically boxed parameters, so callers can trace it for shapes
(`jax.eval_shape`) or run it already sharded (`jax.jit(out_shardings=...)`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from nlhf_jax.errors import ConfigError
from nlhf_jax.models import t5

InitFn = Callable[[], Any]


def init_fn(model: t5.T5, seed: int, input_length: int = 8,
            target_length: int = 8) -> InitFn:
  """Boxed-parameter initialiser of the policy (encoder-decoder T5)."""
  enc = jnp.ones((1, input_length), jnp.int32)
  dec = jnp.ones((1, target_length), jnp.int32)
  return lambda: model.init(jax.random.PRNGKey(seed), enc, dec)["params"]


def scorer_init_fn(model: t5.T5Scorer, seed: int, length: int = 8) -> InitFn:
  """Boxed-parameter initialiser of a T5Scorer (preference / reward model)."""
  tokens = jnp.ones((1, length), jnp.int32)
  return lambda: model.init(jax.random.PRNGKey(seed), tokens)["params"]


def check_vocabulary(model: t5.T5Config, data: Any) -> None:
  """Raises ConfigError if the data's token ids do not fit the model."""
  size = getattr(data, "vocab_size", None)
  if size is not None and size > model.vocab_size:
    raise ConfigError(
        f"The data's vocabulary has {size} ids but the model's vocab_size "
        f"is {model.vocab_size} (T5Config.vocab_size); use a model config "
        "with a vocabulary at least as large.")
