"""Checkpoints: save/resume with integrity checks, params-only restore, preemption.

Layout (orbax `CheckpointManager`)::

  WORKDIR/checkpoints/<step>/state/         TrainState (orbax PyTree, OCDBT)
  WORKDIR/checkpoints/<step>/data_iter/     data iterator position (JSON)
  WORKDIR/checkpoints/<step>/nlhf_manifest.json
                                            size (+ CRC32) of every file,
                                            written after the save completed
  WORKDIR/checkpoints_quarantine/<step>-<time>/
                                            checkpoints found corrupt

Resuming picks the newest step whose manifest matches the files on disk and
that orbax restores without error. A step that fails either check (a file
truncated or overwritten, a save interrupted before the manifest was
written, unreadable data) is reported, moved to the quarantine directory
and the previous step is tried. Orbax itself writes into a temporary
directory and renames it on success, so a save killed half-way never shows
up as a step.

`restore_params` reads only `state.params` of one of our checkpoints (for
initialisation); pretrained T5 weights come from `checkpoint_import`.
`PreemptionWatcher` turns SIGTERM (TPU maintenance / preemption) into a
request to checkpoint at the next step boundary and exit cleanly.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import time
from typing import Any, Callable, Mapping, Optional, Sequence
import zlib

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from nlhf_jax import checkpoint_import
from nlhf_jax import errors

MANIFEST = "nlhf_manifest.json"
CHECKPOINTS_SUBDIR = "checkpoints"
QUARANTINE_SUBDIR = "checkpoints_quarantine"
INTEGRITY_MODES = ("none", "size", "crc32")
INIT_FORMATS = ("auto", "hf", "t5x", "nlhf")
_CHUNK = 1 << 22


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """How often to save and how many checkpoints to keep.

  Attributes:
    every_steps: save every this many steps (0: only at the end and on
      preemption).
    keep: number of most recent checkpoints kept (older ones are deleted).
    integrity: what the manifest records and resuming verifies: 'crc32'
      (sizes and CRC32 of every file; reads the checkpoint once more after
      saving), 'size' (sizes only: cheap on remote storage) or 'none'.
  """

  every_steps: int = 1000
  keep: int = 3
  integrity: str = "crc32"

  def __post_init__(self):
    errors.check_non_negative(self, "every_steps", self.every_steps,
                              integer=True)
    errors.check_at_least(self, "keep", self.keep, 1, integer=True)
    errors.check_choice(self, "integrity", self.integrity, INTEGRITY_MODES)


@dataclasses.dataclass(frozen=True)
class Restored:
  """A restored checkpoint: the state, the data position and the step."""
  state: Any
  data_state: Optional[dict[str, Any]]
  step: int


def _crc32(path: epath.Path) -> int:
  crc = 0
  with path.open("rb") as f:
    while chunk := f.read(_CHUNK):
      crc = zlib.crc32(chunk, crc)
  return crc


def _list_files(step_dir: epath.Path) -> list[str]:
  out = []
  for root, _, files in step_dir.walk():
    for name in files:
      rel = str((epath.Path(root) / name).relative_to(step_dir))
      if rel != MANIFEST:
        out.append(rel)
  return sorted(out)


def write_manifest(step_dir: epath.PathLike, mode: str) -> None:
  """Records every file of a finished checkpoint (size, CRC32 if asked)."""
  step_dir = epath.Path(step_dir)
  files = {}
  for rel in _list_files(step_dir):
    path = step_dir / rel
    entry = {"size": path.stat().length}
    if mode == "crc32":
      entry["crc32"] = _crc32(path)
    files[rel] = entry
  tmp = step_dir / (MANIFEST + ".tmp")
  tmp.write_text(json.dumps({"integrity": mode, "files": files}))
  tmp.rename(step_dir / MANIFEST)


def verify_manifest(step_dir: epath.PathLike) -> Optional[str]:
  """Checks a checkpoint against its manifest.

  Returns:
    None if it matches, else a sentence saying what is wrong.
  """
  step_dir = epath.Path(step_dir)
  path = step_dir / MANIFEST
  if not path.exists():
    return (f"no {MANIFEST} (the save did not finish, or the checkpoint was "
            "not written by nlhf_jax)")
  try:
    manifest = json.loads(path.read_text())
    files = manifest["files"]
  except (OSError, ValueError, KeyError) as e:
    return f"unreadable {MANIFEST}: {e}"
  if manifest.get("integrity") == "none":
    return None
  for rel, entry in files.items():
    full = step_dir / rel
    if not full.exists():
      return f"file {rel} is missing"
    size = full.stat().length
    if size != entry["size"]:
      return f"file {rel} has {size} bytes, {entry['size']} were written"
    if "crc32" in entry and _crc32(full) != entry["crc32"]:
      return f"file {rel} fails its CRC32 check (contents changed)"
  return None


def _is_disk_full(error: BaseException) -> bool:
  """True for ENOSPC, however orbax / tensorstore wrap it."""
  while error is not None:
    if getattr(error, "errno", None) == errno.ENOSPC or any(
        marker in str(error) for marker in ("No space left",
                                            "RESOURCE_EXHAUSTED")):
      return True
    error = error.__cause__ or error.__context__
  return False


def _is_primary() -> bool:
  return jax.process_index() == 0


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


class Checkpointer:
  """Saves and resumes TrainState + data position under `workdir`."""

  def __init__(self, workdir: str, config: CheckpointConfig):
    self._workdir = _absolute(workdir)
    self._dir = os.path.join(self._workdir, CHECKPOINTS_SUBDIR)
    self._config = config
    self._manager = self._make_manager()

  @property
  def directory(self) -> str:
    return self._dir

  def _make_manager(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=self._config.keep, enable_async_checkpointing=False,
        create=True, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(self._dir, options=options,
                                 item_names=("state", "data_iter"))

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any,
           data_state: Optional[Mapping[str, Any]]) -> None:
    """Saves `state` and the data position as checkpoint `step` (blocking).

    Any existing checkpoint of the same step is replaced.
    """
    if step in self._manager.all_steps():
      self._manager.delete(step)
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data_iter=ocp.args.JsonSave(dict(data_state or {})))
    try:
      self._manager.save(step, args=args, force=True)
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      if not _is_disk_full(e):
        raise
      raise OSError(errno.ENOSPC, f"No space left on the device writing the "
                    f"checkpoint of step {step} in {self._dir} ({e})"[:600]
                    ) from e
    if _is_primary():
      write_manifest(os.path.join(self._dir, str(step)),
                     self._config.integrity)
    _sync(f"nlhf_manifest_{step}")

  def _quarantine(self, step: int, reason: str) -> None:
    message = (f"Checkpoint at step {step} in {self._dir} is corrupt or "
               f"incomplete ({reason}); skipping it and falling back to the "
               "previous checkpoint.")
    logging.warning(message)
    print(message, flush=True)
    if _is_primary():
      source = epath.Path(self._dir) / str(step)
      dest = (epath.Path(self._workdir) / QUARANTINE_SUBDIR /
              f"{step}-{int(time.time())}")
      dest.parent.mkdir(parents=True, exist_ok=True)
      try:
        source.rename(dest)
      except (OSError, NotImplementedError) as e:
        # Some object stores cannot rename directories: delete instead.
        logging.warning("Could not move %s to %s (%s); deleting it.",
                        source, dest, e)
        source.rmtree()
    _sync(f"nlhf_quarantine_{step}")
    self._manager.close()
    self._manager = self._make_manager()

  def restore_latest(self, abstract_state: Any) -> Optional[Restored]:
    """Restores the newest intact checkpoint, or returns None if none.

    Args:
      abstract_state: pytree of `jax.ShapeDtypeStruct`s with shardings, with
        the structure of the saved state.

    Returns:
      The restored state and data position, or None when no intact
      checkpoint exists (corrupt ones are reported and quarantined).
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      reason = verify_manifest(os.path.join(self._dir, str(step)))
      if reason is None:
        try:
          restored = self._manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state),
              data_iter=ocp.args.JsonRestore()))
          return Restored(restored.state, dict(restored.data_iter or {}),
                          step)
        except Exception as e:  # pylint: disable=broad-except
          # Orbax/tensorstore raise many types for unreadable data.
          reason = f"restore failed: {type(e).__name__}: {e}"[:500]
      self._quarantine(step, reason)
    return None

  def close(self) -> None:
    self._manager.close()


def _absolute(path: str) -> str:
  """Absolute local path; URLs (gs://...) are returned unchanged."""
  return path if "://" in path else os.path.abspath(path)


def _find_step_dir(path: str) -> str:
  """A step directory (containing `state/`) from a workdir/checkpoints/step."""
  path = epath.Path(_absolute(path))
  if (path / "state").is_dir():
    return str(path)
  for candidate in (path / CHECKPOINTS_SUBDIR, path):
    if not candidate.is_dir():
      continue
    steps = sorted((int(p.name) for p in candidate.iterdir()
                    if p.name.isdigit()), reverse=True)
    for step in steps:
      step_dir = candidate / str(step)
      reason = verify_manifest(step_dir)
      if reason is None:
        return str(step_dir)
      logging.warning("Skipping checkpoint %s: %s", step_dir, reason)
  raise FileNotFoundError(
      f"No intact nlhf_jax checkpoint under {str(path)!r} (expected a "
      "workdir, its checkpoints/ directory, or a step directory containing "
      "state/).")


def _saved_param_shapes(state_dir: str) -> dict[str, Any]:
  saved = ocp.PyTreeCheckpointer().metadata(state_dir)
  tree = getattr(saved, "item_metadata", saved)
  tree = getattr(tree, "tree", tree)
  if not isinstance(tree, Mapping) or "params" not in tree:
    raise ValueError(f"Checkpoint {state_dir} has no 'params' entry.")
  return {k: getattr(v, "shape", None)
          for k, v in checkpoint_import.flatten(tree["params"]).items()}


def restore_params(path: str, abstract_params: Any, *,
                   allow_missing: Sequence[str] = (),
                   ignore_unused: Sequence[str] = ()) -> dict[str, Any]:
  """Reads only the parameters of one of our checkpoints.

  Args:
    path: a workdir, its `checkpoints/` directory (newest intact step is
      used) or one step directory.
    abstract_params: nested dict of ShapeDtypeStructs (with shardings) of the
      parameters to read.
    allow_missing: parameter name prefixes ('a/b') that may be absent from
      the checkpoint; they are left out of the result.
    ignore_unused: checkpoint name prefixes that may be left unread.

  Returns:
    Nested dict of the parameters read, placed per `abstract_params`.

  Raises:
    FileNotFoundError: no checkpoint found.
    ValueError: names or shapes differ (the message lists them).
  """
  state_dir = os.path.join(_find_step_dir(path), "state")
  shapes = _saved_param_shapes(state_dir)
  checkpoint_import.check_tree_matches(
      shapes, abstract_params, source=state_dir, allow_missing=allow_missing,
      ignore_unused=ignore_unused)
  wanted = checkpoint_import.unflatten(
      {k: v for k, v in checkpoint_import.flatten(abstract_params).items()
       if k in shapes})
  item = {"params": wanted}
  restore_args = jax.tree.map(
      lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding, dtype=x.dtype),
      item)
  out = ocp.PyTreeCheckpointer().restore(state_dir, args=ocp.args.PyTreeRestore(
      item=item, restore_args=restore_args, partial_restore=True))
  return out["params"]


@dataclasses.dataclass(frozen=True)
class InitConfig:
  """Where initial parameters come from when there is nothing to resume.

  Attributes:
    path: None (random initialisation), a Hugging Face T5 directory, a T5X
      checkpoint, or an nlhf_jax workdir / checkpoint.
    format: 'auto' (detected from the files), 'hf', 't5x' or 'nlhf'.
    allow_missing: extra parameter prefixes kept from the random
      initialisation (the algorithm adds its new heads, e.g. 'score_head').
    ignore_unused: extra checkpoint prefixes to ignore (the algorithm adds
      e.g. 'logits_dense' when a scorer starts from a language model).
  """

  path: Optional[str] = None
  format: str = "auto"
  allow_missing: tuple[str, ...] = ()
  ignore_unused: tuple[str, ...] = ()

  def __post_init__(self):
    errors.check_choice(self, "format", self.format, INIT_FORMATS)
    if self.path is not None:
      errors.check_path_exists(
          self, "path", self.path, exists=lambda p: epath.Path(p).exists(),
          hint="a Hugging Face T5 directory, a T5X checkpoint or an nlhf_jax "
          "workdir; gin macro INIT_PATH")


def _place(value: Any, like: Any) -> jax.Array:
  """Host array -> jax.Array with `like`'s shape, dtype and sharding."""
  if isinstance(value, jax.Array):
    return value
  host = np.asarray(value, dtype=like.dtype)
  return jax.make_array_from_callback(host.shape, like.sharding,
                                      lambda index: host[index])


def load_initial_params(init: InitConfig, model_config: Any,
                        abstract_params: Any,
                        fresh_params: Callable[[], Any], *,
                        allow_missing: Sequence[str] = (),
                        ignore_unused: Sequence[str] = ()) -> Any:
  """Initial parameters: random, or read from a checkpoint (params only).

  Args:
    init: the source.
    model_config: the `T5Config` of the model (for the T5X/HF mappings).
    abstract_params: ShapeDtypeStructs with shardings of the parameters.
    fresh_params: returns randomly initialised, sharded parameters; called
      only when needed (random init, or leaves the checkpoint lacks).
    allow_missing: prefixes the algorithm itself adds (new heads).
    ignore_unused: checkpoint prefixes the algorithm does not use.

  Returns:
    Parameters with the structure and shardings of `abstract_params`.
  """
  if init.path is None:
    return fresh_params()
  missing_ok = tuple(allow_missing) + tuple(init.allow_missing)
  unused_ok = tuple(ignore_unused) + tuple(init.ignore_unused)
  fmt = (checkpoint_import.detect_format(init.path) if init.format == "auto"
         else init.format)
  print(f"Initialising parameters from {init.path} ({fmt} format).",
        flush=True)
  if fmt == "nlhf":
    loaded = restore_params(init.path, abstract_params,
                            allow_missing=missing_ok, ignore_unused=unused_ok)
  else:
    host = checkpoint_import.load_pretrained(init.path, fmt, model_config)
    loaded = checkpoint_import.fit_to_target(
        host, abstract_params, source_name=f"{fmt} checkpoint {init.path}",
        allow_missing=missing_ok, ignore_unused=unused_ok)
  flat_loaded = checkpoint_import.flatten(loaded)
  flat_target = checkpoint_import.flatten(abstract_params)
  fresh = None
  out = {}
  for name, like in flat_target.items():
    value = flat_loaded.get(name)
    if value is None or isinstance(value, jax.ShapeDtypeStruct):
      if fresh is None:
        fresh = checkpoint_import.flatten(fresh_params())
      value = fresh[name]
    out[name] = _place(value, like)
  return checkpoint_import.unflatten(out)


class PreemptionWatcher:
  """Turns SIGTERM into "checkpoint at the next step boundary, then exit".

  Use as a context manager around the training loop; `should_stop(step)` is
  True once a SIGTERM arrived (on any process, for multi-process runs, via
  JAX's preemption sync point when available).
  """

  def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)):
    self._signals = signals
    self._previous: dict[int, Any] = {}
    self.received: Optional[int] = None

  def _handler(self, signum, frame):
    del frame
    self.received = signum

  def __enter__(self) -> "PreemptionWatcher":
    try:
      for sig in self._signals:
        self._previous[sig] = signal.signal(sig, self._handler)
    except ValueError:  # Not the main thread: leave the handlers alone.
      logging.warning("PreemptionWatcher: not in the main thread; SIGTERM "
                      "will not trigger a checkpoint.")
    return self

  def __exit__(self, *exc) -> None:
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    self._previous.clear()

  def should_stop(self, step: int) -> bool:
    if jax.process_count() == 1:
      return self.received is not None
    try:
      # All processes agree on the step (JAX's preemption service, on by
      # default on Cloud TPU).
      return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:
      # No preemption service: combine the local flags (one small
      # all-gather per step).
      flags = multihost_utils.process_allgather(
          np.int32(self.received is not None))
      return bool(np.max(flags))
