"""Training-metric logs: a minimal JSON-lines format and its reader/writer.

Format (one file per run, UTF-8, one JSON object per line):

  {"step": 100, "loss": 0.693, "kl": 0.01, "win_rate_vs_sft": 0.55}
  {"step": 200, "loss": 0.650, "kl": 0.02, "note": "lr decayed"}

* "step" (required): a non-negative integer (a float with integral value,
  such as 100.0, is accepted).
* Every other key whose value is a JSON number (int or float, not bool) is a
  metric; NaN / Infinity as written by Python's json module are accepted.
  Keys with other values (strings, lists, null, objects) are ignored, so
  wall-clock stamps or notes may ride along.
* Blank lines are skipped. Steps need not be sorted or unique; readers
  return records in file order and plots sort by step.

In memory a run is a list of (step, {metric: value}) records, and several
runs are a {run name: records} mapping: the input of
`plots.plot_training_curves`. Pure Python.
"""

from __future__ import annotations

import json
import math
import os
from typing import Iterable, Mapping, Sequence

Record = tuple[int, dict[str, float]]


def _is_number(value: object) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_record(obj: object, where: str = "record") -> Record:
  """Converts one decoded JSON object to (step, metrics).

  Args:
    obj: a dict with "step" and metric values.
    where: location used in error messages (e.g. "path:12").

  Returns:
    (step, {name: float}) with the non-numeric keys dropped.

  Raises:
    ValueError: if `obj` is not an object or "step" is missing or not a
      non-negative integer.
  """
  if not isinstance(obj, dict):
    raise ValueError(f"{where}: expected a JSON object, got "
                     f"{type(obj).__name__}")
  if "step" not in obj:
    raise ValueError(f"{where}: no 'step' key (keys: {sorted(obj)})")
  step = obj["step"]
  if (not _is_number(step) or not math.isfinite(step) or step < 0
      or step != int(step)):
    raise ValueError(f"{where}: 'step' must be a non-negative integer, got "
                     f"{step!r}")
  metrics = {k: float(v) for k, v in obj.items()
             if k != "step" and _is_number(v)}
  return int(step), metrics


def read_metrics_jsonl(path: str | os.PathLike) -> list[Record]:
  """Reads one run's metric log (format in the module doc).

  Raises:
    ValueError: on invalid JSON or a bad record (file and line are named).
  """
  records = []
  with open(path, encoding="utf-8") as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      where = f"{path}:{line_number}"
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{where}: invalid JSON: {e.msg}") from None
      records.append(parse_record(obj, where))
  return records


def write_metrics_jsonl(path: str | os.PathLike,
                        records: Iterable[tuple[int, Mapping[str, float]]],
                        append: bool = False) -> None:
  """Writes (step, metrics) records in the format of the module doc.

  Args:
    path: output file.
    records: (step, {metric: number}) pairs.
    append: append to an existing file instead of overwriting it.

  Raises:
    ValueError: if a record's step or metrics are invalid (its position is
      named) or a metric is called "step".
  """
  lines = []
  for i, (step, metrics) in enumerate(records):
    if "step" in metrics:
      raise ValueError(f"records[{i}]: a metric may not be called 'step'")
    obj = {"step": int(step) if hasattr(step, "__index__") else step}
    for name, value in metrics.items():
      try:
        obj[str(name)] = float(value)
      except (TypeError, ValueError):
        raise ValueError(f"records[{i}] (step {step}): metric {name!r} = "
                         f"{value!r:.40} is not a number") from None
    parse_record(obj, f"records[{i}]")
    lines.append(json.dumps(obj) + "\n")
  with open(path, "a" if append else "w", encoding="utf-8") as f:
    f.writelines(lines)


def read_runs(
    paths: Mapping[str, str | os.PathLike]) -> dict[str, list[Record]]:
  """Reads several runs: {run name: path} -> {run name: records}."""
  return {name: read_metrics_jsonl(path) for name, path in paths.items()}


def metric_names(runs: Mapping[str, Sequence[Record]]) -> list[str]:
  """All metric names in `runs`, in order of first appearance."""
  names = {}
  for records in runs.values():
    for _, metrics in records:
      for name in metrics:
        names.setdefault(name, None)
  return list(names)
