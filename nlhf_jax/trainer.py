"""Algorithm-agnostic training loop.

An algorithm supplies `step_fn(state, batch, rng[, frozen]) -> (state,
metrics)` (its `make_train_step`); `build_program` turns it, the run's
optimizer and NaN policy into a `program.Program` (the sharded state layout
and the one jitted, guarded step). `train` runs a Program on the data:

* builds the sharded `TrainState` at the Program's layout (or resumes the
  newest intact checkpoint, with the data iterator position saved beside
  it);
* calls the Program's step (compiled once; the step RNG is
  `fold_in(PRNGKey(seed), state.step)` so a resumed run repeats the
  uninterrupted one bit for bit);
* checks the loss: a NaN/inf stops the run naming the step (`nan_policy=
  'stop'`), or the update is discarded and counted (`'skip'`); a judge
  that returned bad values (the step's `invalid_judge_values/<judge>`
  counts, `judges.checks`) stops the run naming the judge, whatever the
  policy;
* logs (console progress with steps/s and ETA, metrics.jsonl, TensorBoard),
  evaluates every `eval_every` steps, checkpoints every
  `checkpoint.every_steps` steps and at the end;
* on SIGTERM saves a checkpoint at the next step boundary and returns with
  `preempted=True` (the process then exits with status 0).

Metrics stay on device between log steps; the finiteness check reads them
at every log, evaluation and checkpoint boundary, so no checkpoint ever holds
a state past a non-finite step under the 'stop' policy.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh
import numpy as np

from nlhf_jax import checkpointing
from nlhf_jax import errors
from nlhf_jax import metrics as metrics_lib
from nlhf_jax import optimizers
from nlhf_jax import partitioning
from nlhf_jax import program as program_lib
from nlhf_jax import stage_timing
from nlhf_jax import train_state as train_state_lib
from nlhf_jax.data import iterators as data_iterators
from nlhf_jax.errors import ConfigError
from nlhf_jax.judges import checks

TrainState = train_state_lib.TrainState
StepFn = train_state_lib.StepFn
Evaluator = train_state_lib.Evaluator
Frozen = train_state_lib.Frozen
NAN_POLICIES = ("stop", "skip")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Settings of one training run (gin binds it as a unit).

  Attributes:
    steps: number of optimizer steps.
    batch_size: global batch size (rows per step over all processes).
    seed: seed of initialisation, data order and per-step RNG.
    log_every: console/metrics interval in steps.
    eval_every: evaluate every this many steps (0: only at the end).
    eval_batches: evaluation batches per evaluation (0: the whole split).
    eval_batch_size: evaluation batch size (0: `batch_size`).
    nan_policy: 'stop' (default: a non-finite loss ends the run with an
      error naming the step) or 'skip' (the update is discarded, counted in
      the `skipped_nonfinite` metric).
    tensorboard: also write TensorBoard summaries.
    stage_timing_every: every this many steps, time the step's sampling,
      judging and update (`stage_timing`; online steps only; 0: never).
      Logged under the split "timing", summarised at the end.
    optimizer: optimizer and learning-rate schedule.
    checkpoint: checkpoint interval and retention.
  """

  steps: int = 1000
  batch_size: int = 32
  seed: int = 0
  log_every: int = 50
  eval_every: int = 0
  eval_batches: int = 0
  eval_batch_size: int = 0
  nan_policy: str = "stop"
  tensorboard: bool = True
  stage_timing_every: int = 100
  optimizer: optimizers.OptimizerConfig = optimizers.OptimizerConfig()
  checkpoint: checkpointing.CheckpointConfig = (
      checkpointing.CheckpointConfig())

  def __post_init__(self):
    for name in ("steps", "batch_size", "log_every"):
      errors.check_at_least(self, name, getattr(self, name), 1,
                            integer=True)
    for name in ("eval_every", "eval_batches", "eval_batch_size",
                 "stage_timing_every"):
      errors.check_non_negative(self, name, getattr(self, name),
                                integer=True)
    errors.check_choice(self, "nan_policy", self.nan_policy, NAN_POLICIES)


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite (nan_policy='stop')."""


@dataclasses.dataclass
class TrainResult:
  """What `train` returns."""
  state: TrainState
  step: int
  train_metrics: dict[str, float]
  eval_metrics: dict[str, float]
  preempted: bool
  skipped_steps: int
  num_compiles: int


def _device_batch(batch: Mapping[str, np.ndarray], sharding) -> dict:
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def _to_host(tree: Any) -> Any:
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, tree)


class _MetricWindow:
  """Device metrics of the steps since the last drain."""

  def __init__(self, policy: str):
    self._pending: list[tuple[int, dict[str, jax.Array]]] = []
    self._policy = policy
    self.skipped = 0

  def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
    self._pending.append((step, metrics))

  def drain(self) -> dict[str, float]:
    """Host means over finite steps; raises on the first non-finite step."""
    pending, self._pending = self._pending, []
    if not pending:
      return {}
    host = [(s, {k: float(np.asarray(v)) for k, v in m.items()})
            for s, m in pending]
    for s, m in host:
      checks.raise_on_invalid(s, m)
    finite = [m for _, m in host if m["finite"]]
    bad = [(s, m["loss"]) for s, m in host if not m["finite"]]
    if bad and self._policy == "stop":
      step, loss = bad[0]
      raise NonFiniteLossError(
          f"Loss is {loss} at step {step}; stopping (the last checkpoint "
          "precedes this step). Lower the learning rate, check the data, or "
          "set TrainConfig.nan_policy='skip' to discard such updates.")
    self.skipped += len(bad)
    out = {k: float(np.mean([m[k] for m in finite]))
           for k in (finite[0] if finite else {}) if k != "finite"}
    out["skipped_nonfinite"] = float(self.skipped)
    return out


def evaluate(state: TrainState, eval_step: Callable[..., Any],
             evaluator: Evaluator, batches: Any, batch_sharding,
             max_batches: int = 0) -> dict[str, float]:
  """Runs `evaluator` over `batches` and summarises the per-example outputs."""
  outputs: dict[str, list[np.ndarray]] = {}
  for i, batch in enumerate(batches):
    if max_batches and i >= max_batches:
      break
    valid = np.asarray(batch.get(data_iterators.VALID_KEY,
                                 np.ones(len(next(iter(batch.values()))),
                                         bool)))
    out = _to_host(eval_step(state, _device_batch(batch, batch_sharding)))
    valid = _to_host(valid) if jax.process_count() > 1 else valid
    for k, v in out.items():
      outputs.setdefault(k, []).append(np.asarray(v)[valid])
  if not outputs:
    raise ValueError("The evaluation data yielded no batches.")
  return evaluator.summarize({k: np.concatenate(v)
                              for k, v in outputs.items()})


def _write_model_info(workdir: str, params: Any, shardings: Any) -> None:
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "model_info.txt"), "w",
            encoding="utf-8") as f:
    f.write(partitioning.parameter_report(params, shardings) + "\n")


def check_workdir(workdir: Any) -> None:
  """ConfigError unless `workdir` is a non-empty path string."""
  if not isinstance(workdir, str) or not workdir:
    raise ConfigError(f"workdir must be a path string (gin macro WORKDIR), "
                      f"got {workdir!r}.")


def check_batch_fits(config: TrainConfig, mesh: Mesh) -> None:
  """ConfigError unless the batch sizes split over the mesh's batch axes."""
  data_devices = mesh.shape["data"] * mesh.shape["fsdp"]
  for name in ("batch_size", "eval_batch_size"):
    if getattr(config, name) % data_devices:
      raise ConfigError(f"TrainConfig.{name}={getattr(config, name)} must be "
                        f"a multiple of the mesh's data x fsdp size "
                        f"{data_devices}.")


def build_program(config: TrainConfig, mesh: Mesh,
                  init_fn: Callable[[], Any], step_fn: StepFn, *,
                  with_ema: bool = False, with_anchor: bool = False,
                  frozen_init: Optional[Frozen] = None,
                  timed_stages: bool = False) -> program_lib.Program:
  """The Program this run's settings make of an algorithm's step.

  The optimizer is `config.optimizer` with its schedule over
  `config.steps`; `nan_policy='skip'` discards non-finite updates inside
  the step; `timed_stages` (a step with `stage_timing` marks) builds the
  prefix programs `stage_timing_every` uses. Checks the batch sizes against
  the mesh first.
  """
  check_batch_fits(config, mesh)
  return program_lib.build(
      mesh=mesh, init_fn=init_fn,
      tx=optimizers.make_optimizer(config.optimizer, config.steps),
      step_fn=step_fn, with_ema=with_ema, with_anchor=with_anchor,
      frozen_init=frozen_init,
      skip_nonfinite=config.nan_policy == "skip",
      timed_stages=timed_stages and config.stage_timing_every > 0)


def _initial_state(workdir: str, program: program_lib.Program,
                   initial_params_fn: Optional[Callable[..., Any]],
                   checkpointer: checkpointing.Checkpointer,
                   data_iter: Any) -> tuple[TrainState, int]:
  """Resumes the newest intact checkpoint, else initialises (sharded)."""
  restored = checkpointer.restore_latest(program.abstract_state)
  if restored is not None:
    if restored.data_state:
      data_iter.set_state(restored.data_state)
    print(f"Resumed from the checkpoint at step {restored.step} in "
          f"{checkpointer.directory}.", flush=True)
    return restored.state, restored.step
  if initial_params_fn is None:
    params = program.fresh_params()
  else:
    params = initial_params_fn(program.abstract_state.params,
                               program.fresh_params)
  state = program.create_state(params)
  _write_model_info(workdir, state.params, program.state_shardings.params)
  return state, 0


def train(*, config: TrainConfig, workdir: str,
          program: program_lib.Program,
          train_data: data_iterators.StatefulIterator,
          evaluator: Optional[Evaluator] = None,
          eval_data: Optional[Callable[[], Any]] = None,
          initial_params_fn: Optional[Callable[..., Any]] = None,
          progress_keys: Optional[tuple[str, ...]] = None,
          hooks: Sequence[Callable[[int, TrainState], None]] = (),
          frozen: Optional[Frozen] = None) -> TrainResult:
  """Trains for `config.steps` steps (resuming from `workdir` if possible).

  Args:
    config: run settings (the ones `program` was built with:
      `build_program(config, ...)`).
    workdir: checkpoints, metrics.jsonl, model_info.txt go here.
    program: the state layout and the jitted step.
    train_data: resumable iterator of host batches (this process's rows).
    evaluator: optional evaluation; needs `eval_data`.
    eval_data: returns a fresh one-pass iterator over evaluation batches.
    initial_params_fn: (abstract params with shardings, fresh_fn) -> params;
      e.g. pretrained weights via `checkpointing.load_initial_params`.
    progress_keys: metrics shown on the console (default: all).
    hooks: called as hook(step, state) after every step (e.g. custom logging).
    frozen: the frozen models' parameters, laid out as
      `program.abstract_frozen` (required iff the program has frozen
      models); passed to every step, never donated or checkpointed.

  Returns:
    A TrainResult; `preempted` is True if a SIGTERM cut the run short (a
    checkpoint of the reached step was saved).

  Raises:
    NonFiniteLossError: a non-finite loss under nan_policy='stop'.
  """
  check_workdir(workdir)
  if (evaluator is None) != (eval_data is None):
    raise ValueError("Pass both evaluator and eval_data, or neither.")
  if (frozen is None) != (program.abstract_frozen is None):
    raise ValueError("Pass `frozen` exactly when the program was built "
                     "with `frozen_init`.")
  check_batch_fits(config, program.mesh)
  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint)
  writer = metrics_lib.MetricWriter(workdir, config.tensorboard)
  try:
    state, start = _initial_state(workdir, program, initial_params_fn,
                                  checkpointer, train_data)
    loop = _TrainLoop(config, program, start, train_data, evaluator,
                      eval_data, checkpointer, writer, progress_keys, frozen)
    with partitioning.activate(program.mesh):
      return loop.run(state, start, hooks)
  finally:
    writer.close()
    checkpointer.close()


class _TrainLoop:
  """The step loop of `train` (see there): one instance per run."""

  def __init__(self, config, program, start, train_data, evaluator,
               eval_data, checkpointer, writer, progress_keys, frozen):
    self.config, self.program, self.train_data = config, program, train_data
    self.evaluator, self.eval_data = evaluator, eval_data
    self.checkpointer, self.writer = checkpointer, writer
    self.batch_sharding = program.batch_sharding
    self.frozen_args = () if frozen is None else (frozen,)
    self.eval_step = None
    if evaluator is not None:
      eval_step = program.jit_eval(evaluator.step, evaluator.uses_frozen)
      frozen_args = self.frozen_args if evaluator.uses_frozen else ()
      self.eval_step = lambda state, batch: eval_step(state, batch,
                                                      *frozen_args)
    self.base_rng = jax.device_put(jax.random.PRNGKey(config.seed),
                                   partitioning.replicated(program.mesh))
    self.window = _MetricWindow(config.nan_policy)
    self.progress = metrics_lib.ProgressReporter(config.steps, start,
                                                 progress_keys)
    self.is_primary = jax.process_index() == 0
    self.train_metrics, self.eval_metrics = {}, {}
    self.last_saved = start
    self.start = start
    self.stage_timer = None
    if program.stage_prefixes and config.stage_timing_every:
      self.stage_timer = stage_timing.StageTimer(program.stage_prefixes)

  def drain(self) -> None:
    """Reads the pending step metrics (raises on a non-finite loss)."""
    self.train_metrics = self.window.drain() or self.train_metrics

  def log(self, step: int) -> None:
    self.drain()
    self.writer.write(step, "train", self.train_metrics)
    if self.is_primary:
      print(self.progress.line(step, self.train_metrics), flush=True)

  def run_eval(self, state: TrainState, step: int) -> None:
    self.drain()
    t0 = time.perf_counter()
    self.eval_metrics = evaluate(state, self.eval_step, self.evaluator,
                                 self.eval_data(), self.batch_sharding,
                                 self.config.eval_batches)
    self.writer.write(step, "eval", self.eval_metrics)
    if self.is_primary:
      shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(
          self.eval_metrics.items()))
      print(f"eval at step {step} ({time.perf_counter() - t0:.1f}s): "
            f"{shown}", flush=True)

  def save(self, state: TrainState, step: int) -> None:
    self.drain()  # Never checkpoint a state past a non-finite step.
    self.checkpointer.save(step, state, self.train_data.get_state())
    self.last_saved = step

  def result(self, state: TrainState, step: int,
             preempted: bool) -> TrainResult:
    return TrainResult(state, step, self.train_metrics, self.eval_metrics,
                       preempted, self.window.skipped,
                       self.program.num_traces)

  def take_step(self, state: TrainState, batch: dict, step: int) -> Any:
    """Runs step `step` (1-based); times its stages when that is due.

    Never the first step of this process (it compiles).
    """
    args = (state, batch, self.base_rng, *self.frozen_args)
    every = self.config.stage_timing_every
    if (self.stage_timer is None or step % every or
        step == self.start + 1):
      return self.program.step(*args)
    out, record = self.stage_timer.measure(
        args, lambda: self.program.step(*args))
    self.writer.write(step, "timing", record)
    if self.is_primary:
      print(stage_timing.line(step, record), flush=True)
    return out

  def after_step(self, state: TrainState, step: int) -> None:
    """Logging, evaluation and checkpointing due after `step`."""
    config = self.config
    final = step == config.steps
    if step % config.log_every == 0 or final:
      self.log(step)
    if (self.evaluator is not None and config.eval_every and
        step % config.eval_every == 0 and not final):
      self.run_eval(state, step)
    every = config.checkpoint.every_steps
    if (every and step % every == 0) or final:
      self.save(state, step)

  def run(self, state: TrainState, start: int,
          hooks: Sequence[Callable[[int, TrainState], None]]) -> TrainResult:
    step = start
    with checkpointing.PreemptionWatcher() as watcher:
      while step < self.config.steps:
        batch = _device_batch(next(self.train_data), self.batch_sharding)
        state, metrics = self.take_step(state, batch, step + 1)
        step += 1
        self.window.add(step, metrics)
        self.after_step(state, step)
        for hook in hooks:
          hook(step, state)
        if watcher.should_stop(step) and step < self.config.steps:
          if self.last_saved != step:
            self.save(state, step)
          print(f"Received SIGTERM: saved a checkpoint at step {step} in "
                f"{self.checkpointer.directory}; exiting cleanly. Run the "
                "same command again to resume.", flush=True)
          return self.result(state, step, preempted=True)
    if self.evaluator is not None:
      self.run_eval(state, step)
    if self.stage_timer is not None and self.is_primary:
      summary = self.stage_timer.summary()
      if summary:
        print(summary, flush=True)
    return self.result(state, step, preempted=False)
