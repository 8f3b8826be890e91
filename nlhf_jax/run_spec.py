"""The run spec: what a workdir holds, machine-readable, beside config.gin.

Every job writes `<workdir>/run_spec.json` before its first step: the job
kind, the model configs by role, the data source and its vocabulary and
lengths, the judge's input layout, the algorithm and its config, the
sampling settings, EMA on/off and the train settings (steps, batch,
optimizer). Evaluation and the sweep read specs instead of re-parsing gin:

  spec = run_spec.read(workdir)
  policy = spec.model("policy")          # a T5Config
  spec.section("data")["vocabulary"]     # plain JSON values

A config value is stored as {"type": "module.Class", "fields": {...}} for
a dataclass (recursively) and as itself for JSON scalars, lists and dicts,
so `decode` rebuilds frozen dataclasses such as `T5Config` exactly.

Resuming into a workdir compares the new spec with the stored one
(`check_resume`): a difference in anything that shapes the saved state or
what it means (`STATE_SHAPING`: the models, the algorithm and its step,
the judge (its kind, model, layout or function; not its checkpoint
path), EMA on/off, the optimizer kind and the fields that change
its state, the vocabulary and sequence lengths) is a ConfigError naming
every differing field with both values, raised before any checkpoint is
touched; any other difference (steps, intervals, evaluation, learning
rate, data directory) is allowed and appended to `run_spec_changes.jsonl`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import time
from typing import Any, Mapping, Optional

from nlhf_jax.errors import ConfigError

FILE_NAME = "run_spec.json"
CHANGES_FILE = "run_spec_changes.jsonl"
VERSION = 1
# Dotted field paths (prefixes) whose change makes a workdir's checkpoints
# another run's: refused on resume.
STATE_SHAPING = (
    "job", "models", "algorithm", "make_step", "layout", "with_ema",
    "judge.type", "judge.model", "judge.layout", "judge.fn", "judge.members",
    "judge.weights",
    "train.optimizer.name", "train.optimizer.grad_clip_norm",
    "train.optimizer.weight_decay",
    "train.optimizer.adafactor_multiply_by_parameter_scale",
    "data.type", "data.vocabulary", "data.input_length", "data.target_length")


def encode(value: Any) -> Any:
  """A JSON-able form of a config value (module docstring)."""
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    kind = type(value)
    return {"type": f"{kind.__module__}.{kind.__qualname__}",
            "fields": {f.name: encode(getattr(value, f.name))
                       for f in dataclasses.fields(value) if f.init}}
  if isinstance(value, (list, tuple)):
    return [encode(v) for v in value]
  if isinstance(value, Mapping):
    return {str(k): encode(v) for k, v in value.items()}
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if callable(value):
    return f"{getattr(value, '__module__', '?')}." \
        f"{getattr(value, '__qualname__', repr(value))}"
  return repr(value)


def decode(value: Any) -> Any:
  """Inverse of `encode` for dataclasses of the package (lists -> tuples)."""
  if isinstance(value, dict) and set(value) == {"type", "fields"}:
    module, _, name = value["type"].rpartition(".")
    if not module.startswith("nlhf_jax."):
      raise ConfigError(f"run spec: refusing to build {value['type']!r} "
                        "(not an nlhf_jax class).")
    kind = getattr(importlib.import_module(module), name)
    return kind(**{k: decode(v) for k, v in value["fields"].items()})
  if isinstance(value, list):
    return tuple(decode(v) for v in value)
  if isinstance(value, dict):
    return {k: decode(v) for k, v in value.items()}
  return value


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """A workdir's run spec.

  Attributes:
    job: 'sft', 'preference_model', 'reward_model' or 'online'.
    sections: encoded values by section: 'models' ({role: T5Config}),
      'data', 'layout', 'algorithm', 'responses', 'train', 'with_ema',
      'frozen' (checkpoint paths), as the job provides them.
  """

  job: str
  sections: Mapping[str, Any]

  def section(self, name: str) -> Any:
    """The encoded section `name` (ConfigError if the job did not write it)."""
    if name not in self.sections:
      raise ConfigError(f"run spec of a {self.job!r} job has no {name!r} "
                        f"section (it has {sorted(self.sections)}).")
    return self.sections[name]

  def value(self, name: str) -> Any:
    """Section `name` decoded (dataclasses rebuilt)."""
    return decode(self.section(name))

  def model(self, role: str) -> Any:
    """The T5Config of the model in `role` ('policy', 'judge', 'model')."""
    models = self.section("models")
    if role not in models:
      raise ConfigError(f"run spec of a {self.job!r} job has no model "
                        f"{role!r} (it has {sorted(models)}).")
    return decode(models[role])

  def field(self, section: str, name: str) -> Any:
    """One field of a dataclass-valued section, decoded."""
    encoded = self.section(section)
    fields = encoded.get("fields", encoded) if isinstance(encoded,
                                                          dict) else {}
    if name not in fields:
      raise ConfigError(f"run spec section {section!r} has no field "
                        f"{name!r}.")
    return decode(fields[name])

  def to_json(self) -> str:
    return json.dumps({"version": VERSION, "job": self.job,
                       **dict(self.sections)}, indent=1, sort_keys=True)


def make(job: str, **sections: Any) -> RunSpec:
  """A RunSpec from config values (encoded here)."""
  return RunSpec(job, {k: encode(v) for k, v in sections.items()})


def path(workdir: str) -> str:
  return os.path.join(workdir, FILE_NAME)


def write(workdir: str, spec: RunSpec) -> None:
  """Writes `<workdir>/run_spec.json` atomically (call from process 0)."""
  os.makedirs(workdir, exist_ok=True)
  tmp = path(workdir) + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(spec.to_json() + "\n")
  os.replace(tmp, path(workdir))


def read(workdir: str) -> RunSpec:
  """The spec a job wrote into `workdir`.

  Raises:
    ConfigError: no spec there (not a run directory, or written by a
      version before run specs), or one that is not valid JSON.
  """
  file = path(workdir)
  if not os.path.isfile(file):
    raise ConfigError(f"{file} not found: {workdir!r} is not the workdir of "
                      "a finished or running job (or it predates run specs; "
                      "re-run the job to write one).")
  try:
    with open(file, encoding="utf-8") as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise ConfigError(f"{file}: not valid JSON ({e}).") from e
  if data.get("version") != VERSION:
    raise ConfigError(f"{file}: version {data.get('version')!r}, this code "
                      f"reads version {VERSION}.")
  job = data.pop("job")
  data.pop("version")
  return RunSpec(job, data)


def maybe_read(workdir: str) -> Optional[RunSpec]:
  """`read`, or None when the workdir has no spec yet."""
  return read(workdir) if os.path.isfile(path(workdir)) else None


def flatten(spec: RunSpec) -> dict[str, Any]:
  """{dotted path: JSON value} of every leaf ('models.policy.d_model')."""
  out: dict[str, Any] = {"job": spec.job}

  def walk(prefix: str, value: Any) -> None:
    if isinstance(value, dict) and set(value) == {"type", "fields"}:
      out[prefix + ".type"] = value["type"]
      value = value["fields"]
    if isinstance(value, dict):
      for k, v in value.items():
        walk(f"{prefix}.{k}", v)
    else:
      out[prefix] = value

  for name, value in spec.sections.items():
    walk(name, value)
  return out


def differences(old: RunSpec, new: RunSpec) -> list[tuple[str, Any, Any]]:
  """(path, old value, new value) for every leaf that differs, sorted."""
  a, b = flatten(old), flatten(new)
  missing = object()
  out = []
  for key in sorted(set(a) | set(b)):
    va, vb = a.get(key, missing), b.get(key, missing)
    if va != vb:
      out.append((key, None if va is missing else va,
                  None if vb is missing else vb))
  return out


def is_state_shaping(field_path: str) -> bool:
  return any(field_path == p or field_path.startswith(p + ".")
             for p in STATE_SHAPING)


def _short(field_path: str) -> str:
  """How a field path is shown: a '.type' leaf reads '<path> (class)'."""
  if field_path.endswith(".type"):
    return field_path[:-len(".type")] + " (class)"
  return field_path


def describe(diffs: list[tuple[str, Any, Any]]) -> str:
  """'path old → new; …' of `differences` output."""
  return "; ".join(f"{_short(k)} {a!r} → {b!r}" for k, a, b in diffs)


def check_resume(workdir: str, new: RunSpec) -> list[tuple[str, Any, Any]]:
  """Compares `new` with the spec stored in `workdir` (module docstring).

  Returns:
    The allowed differences (empty for a fresh workdir or the same spec).

  Raises:
    ConfigError: a state-shaping field differs; the message lists each
      as 'path old → new'.
  """
  old = maybe_read(workdir)
  if old is None:
    return []
  diffs = differences(old, new)
  refused = [d for d in diffs if is_state_shaping(d[0])]
  if refused:
    listed = describe(refused)
    raise ConfigError(
        f"{path(workdir)} holds another run: {listed}. Its checkpoints are "
        "left untouched. Use a new WORKDIR for the new configuration, or "
        "restore the old values to resume.")
  return diffs


def record_changes(workdir: str, diffs: list[tuple[str, Any, Any]]) -> None:
  """Appends the allowed differences of a resume to run_spec_changes.jsonl."""
  if not diffs:
    return
  with open(os.path.join(workdir, CHANGES_FILE), "a", encoding="utf-8") as f:
    f.write(json.dumps({"time": time.time(), "changes": [
        {"field": k, "old": a, "new": b} for k, a, b in diffs]}) + "\n")
