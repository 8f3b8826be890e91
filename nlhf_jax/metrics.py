"""Host-side metric output: console progress, metrics.jsonl, TensorBoard.

Only process 0 writes. `metrics.jsonl` (one JSON object per line:
{"step", "split", <metric>: value}) is always written and is what plots and
tests read; a resumed run appends to it, so a step redone after a crash
appears twice (the later line wins). TensorBoard summaries of a local
workdir are written by `tensorboard_events` without TensorFlow; a remote
one (gs://...) goes through `clu.metric_writers` (TensorFlow's file
systems), and where that cannot be imported a one-line notice says why the
summaries are skipped.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping, Optional

import jax

from nlhf_jax import tensorboard_events

METRICS_FILE = "metrics.jsonl"


def _format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  if minutes:
    return f"{minutes}m{secs:02d}s"
  return f"{secs}s"


def _format_value(value: float) -> str:
  if value == 0 or 1e-3 <= abs(value) < 1e4:
    return f"{value:.4f}"
  return f"{value:.3e}"


class ProgressReporter:
  """Console lines with step, rate, ETA and selected metrics."""

  def __init__(self, total_steps: int, start_step: int = 0,
               keys: Optional[tuple[str, ...]] = None):
    self._total = total_steps
    self._keys = keys
    self._last_step = start_step
    self._last_time = time.perf_counter()

  def line(self, step: int, metrics: Mapping[str, float]) -> str:
    """Formats one progress line and resets the rate window."""
    now = time.perf_counter()
    elapsed = max(now - self._last_time, 1e-9)
    rate = (step - self._last_step) / elapsed
    eta = (self._total - step) / rate if rate > 0 else float("inf")
    self._last_step, self._last_time = step, now
    keys = self._keys or tuple(sorted(metrics))
    shown = " | ".join(f"{k} {_format_value(metrics[k])}" for k in keys
                       if k in metrics)
    pct = 100.0 * step / max(self._total, 1)
    return (f"step {step}/{self._total} ({pct:.1f}%) | {rate:.2f} steps/s | "
            f"ETA {_format_duration(eta)}" + (f" | {shown}" if shown else ""))


class MetricWriter:
  """Writes scalar metrics to metrics.jsonl and TensorBoard (process 0)."""

  def __init__(self, workdir: Optional[str], tensorboard: bool = True):
    self._active = jax.process_index() == 0 and workdir is not None
    self._jsonl = None
    self._tb = None
    if not self._active:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, METRICS_FILE), "a",
                       encoding="utf-8")
    if tensorboard:
      self._tb = _tensorboard_writer(workdir)

  def write(self, step: int, split: str,
            metrics: Mapping[str, float]) -> None:
    """Appends one record; TensorBoard tags are '<split>/<name>'."""
    if not self._active:
      return
    record = {"step": int(step), "split": split}
    record.update({k: float(v) for k, v in metrics.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      self._tb.write_scalars(int(step), {f"{split}/{k}": float(v)
                                         for k, v in metrics.items()})

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.flush()
      self._tb.close()
      self._tb = None


def _tensorboard_writer(workdir: str) -> Any:
  logdir = os.path.join(workdir, "tensorboard")
  if "://" not in workdir:
    return tensorboard_events.ScalarEventWriter(logdir)
  try:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f"TensorBoard summaries disabled ({e}); metrics are in "
          f"{os.path.join(workdir, METRICS_FILE)}.", flush=True)
    return None
  return metric_writers.SummaryWriter(logdir)


def read_metrics(workdir: str, split: Optional[str] = None
                 ) -> list[dict[str, Any]]:
  """Records of metrics.jsonl (optionally one split), last one per step."""
  by_key: dict[tuple[int, str], dict[str, Any]] = {}
  path = os.path.join(workdir, METRICS_FILE)
  with open(path, encoding="utf-8") as f:
    for line in f:
      record = json.loads(line)
      if split is None or record["split"] == split:
        by_key[(record["step"], record["split"])] = record
  return [by_key[k] for k in sorted(by_key)]
