"""Checks of a judge's values inside a jitted step.

A judge that returns NaN/inf, or a probability outside [0, 1], must stop
the run with a message naming it rather than poison a gradient. Raising
inside a sharded program is not safe (the other devices would wait at
their next collective forever), so the check is data: `check_values`
turns every bad value into NaN (so the step's loss is not finite either)
and counts them in a metric named after the judge,
`invalid_judge_values/<name>`; the trainer reads it with the other metrics
and raises `JudgeOutputError` naming the judge and the step
(`raise_on_invalid`), whatever its nan_policy, before any checkpoint holds
that step.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

Array = jax.Array
METRIC_PREFIX = "invalid_judge_values/"
# Values a hair outside [0, 1] (float32 round-off) are clipped into it.
TOLERANCE = 1e-6


class JudgeOutputError(ValueError):
  """A judge returned NaN/inf or a value outside its range inside a step."""


def check_values(name: str, values: Array, low: float | None = None,
                 high: float | None = None) -> tuple[Array, dict[str, Array]]:
  """NaN for the bad values of a judge, and their count as a metric.

  Args:
    name: the judge's name (the metric's suffix).
    values: float [n].
    low: lower bound or None.
    high: upper bound or None.

  Returns:
    (values clipped into [low, high] with every NaN/inf or out-of-range
    value set to NaN, {f"{METRIC_PREFIX}{name}": float32 count}).
  """
  ok = jnp.isfinite(values)
  if low is not None:
    ok &= values >= low - TOLERANCE
  if high is not None:
    ok &= values <= high + TOLERANCE
  if low is not None or high is not None:
    values = jnp.clip(values, low, high)
  checked = jnp.where(ok, values, jnp.nan)
  return checked, {METRIC_PREFIX + name: jnp.sum(~ok).astype(jnp.float32)}


def merge(*metrics: Mapping[str, Array]) -> dict[str, Array]:
  """Sums the counts of several checks (the same judge may be checked
  more than once)."""
  out: dict[str, Array] = {}
  for m in metrics:
    for k, v in m.items():
      out[k] = out[k] + v if k in out else v
  return out


def raise_on_invalid(step: int, metrics: Mapping[str, float]) -> None:
  """Raises JudgeOutputError if a step's host metrics count bad values.

  Raises:
    JudgeOutputError: naming the judge, the count and the step.
  """
  for key, count in metrics.items():
    if key.startswith(METRIC_PREFIX) and count > 0:
      name = key[len(METRIC_PREFIX):]
      raise JudgeOutputError(
          f"Judge {name!r} returned {int(count)} values that are NaN, "
          f"infinite or outside its range at step {step}; the run stops "
          "(the last checkpoint precedes this step). Fix the judge (or its "
          "checkpoint) before training on it.")
