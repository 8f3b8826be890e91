"""Seconds per stage of an online step, measured without splitting the step.

An online step is one compiled program: sample responses, judge them,
update the policy. XLA fuses and reorders across those stages, so the
trained program cannot be timed piece by piece. Instead an algorithm marks
the end of its stages in its step function,

  y, y2 = stage_timing.mark("sampling", sample(...))
  p, judge_metrics = stage_timing.mark("judging", judge(...))

which does nothing when the step is traced for training. A *prefix
program* traces the same step but stops at a mark and returns what was
marked: the step's own computation up to there, compiled on its own. Every
`TrainConfig.stage_timing_every` steps the trainer runs

  t_s = prefix up to "sampling", t_j = prefix up to "judging",
  t   = the real training step (blocked before and after),

on the same state, batch and step RNG, each compiled beforehand (compile
time excluded) and each prefix run once untimed first (a program's first
run after compiling also pays for allocation; without this warm-up the
demo measured the sampling prefix alone at 0.294 s against 0.313 s for
the whole step), and reports sampling = t_s, judging = t_j − t_s and
update = t − t_j. The two later ones are differences of separately run
programs: they carry both programs' noise, can come out slightly negative
for a cheap stage, and the prefixes lose the fusion across their end
(their outputs are materialised), so they bound the fused step's pieces
only approximately. The costs are two extra compilations and, at each
measured step, two runs of each prefix.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Callable, Mapping, Sequence, TypeVar

import jax

STAGES = ("sampling", "judging", "update")
MARKED_STAGES = STAGES[:-1]  # The last stage ends with the step.
T = TypeVar("T")

_probe = threading.local()


class _StageReached(Exception):
  """Raised by `mark` while a prefix program is traced (carries the value)."""

  def __init__(self, value: Any):
    super().__init__()
    self.value = value


def _check_stage(stage: str) -> None:
  if stage not in MARKED_STAGES:
    raise ValueError(f"Unknown stage {stage!r}; marked stages: "
                     f"{MARKED_STAGES}.")


def mark(stage: str, value: T) -> T:
  """Marks the end of `stage` ("sampling" or "judging"); returns `value`.

  Inside a prefix program's trace for `stage` it stops the trace there and
  makes `value` the prefix program's output.
  """
  _check_stage(stage)
  if getattr(_probe, "stage", None) == stage:
    raise _StageReached(value)
  return value


def prefix(step_fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
  """`step_fn` cut at the mark of `stage`: returns the marked value.

  Raises ValueError (when traced) if the step never marks `stage`.
  """
  _check_stage(stage)

  def run(*args):
    _probe.stage = stage
    try:
      step_fn(*args)
    except _StageReached as reached:
      return reached.value
    finally:
      _probe.stage = None
    raise ValueError(f"The step function never marks the end of {stage!r} "
                     "(stage_timing.mark); it cannot be timed by stage.")

  return run


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return time.perf_counter() - start, out


class StageTimer:
  """Measures the stages at chosen steps (see the module docstring).

  Args:
    prefixes: {"sampling": jitted prefix, "judging": jitted prefix}, each
      called like the training step (state, batch, base_rng, *frozen).
  """

  def __init__(self, prefixes: Mapping[str, Any]):
    self._prefixes = prefixes
    self._compiled: dict[str, Any] = {}
    self.records: list[dict[str, float]] = []

  def measure(self, args: Sequence[Any], run_step: Callable[[], T]
              ) -> tuple[T, dict[str, float]]:
    """Times the prefixes on `args`, then `run_step()` (the real step).

    Returns:
      (what run_step returned, {"sampling_s", "judging_s", "update_s",
      "step_s"}).
    """
    jax.block_until_ready(args)
    seconds = {}
    for stage in MARKED_STAGES:
      if stage not in self._compiled:
        self._compiled[stage] = self._prefixes[stage].lower(*args).compile()
      run = lambda s=stage: self._compiled[s](*args)
      jax.block_until_ready(run())  # Warm-up, untimed.
      seconds[stage], _ = _timed(run)
    step_s, out = _timed(run_step)
    record = {"sampling_s": seconds["sampling"],
              "judging_s": seconds["judging"] - seconds["sampling"],
              "update_s": step_s - seconds["judging"], "step_s": step_s}
    self.records.append(record)
    return out, record

  def summary(self) -> str:
    """One line: the median of each stage over the measured steps."""
    if not self.records:
      return ""
    median = {k: statistics.median(r[k] for r in self.records)
              for k in self.records[0]}
    parts = " | ".join(
        f"{stage} {median[stage + '_s']:.3f} s "
        f"({100 * median[stage + '_s'] / median['step_s']:.0f}%)"
        for stage in STAGES)
    return (f"Seconds per step (median of {len(self.records)} measured "
            f"steps, prefix programs): {parts} | step "
            f"{median['step_s']:.3f} s")


def line(step: int, record: Mapping[str, float]) -> str:
  """The console line of one measurement."""
  return (f"stage times at step {step}: " + " | ".join(
      f"{stage} {record[stage + '_s']:.3f} s" for stage in STAGES) +
          f" | step {record['step_s']:.3f} s")
