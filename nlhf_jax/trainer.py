"""Algorithm-agnostic training loop.

An algorithm supplies `step_fn(state, batch, rng) -> (state, metrics)` (its
`make_train_step`), optionally an `Evaluator`, and the data; `train` does the
rest:

* builds the sharded `TrainState` (or resumes the newest intact checkpoint,
  with the data iterator position saved beside it);
* compiles the step once with `jax.jit` (state shardings from the logical
  axes, batch over (data, fsdp), the state donated), with the step RNG
  `fold_in(PRNGKey(seed), state.step)` so a resumed run repeats the
  uninterrupted one bit for bit;
* checks the loss: a NaN/inf stops the run naming the step (`nan_policy=
  'stop'`), or the update is discarded and counted (`'skip'`);
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

import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

from nlhf_jax import checkpointing
from nlhf_jax.data import iterators as data_iterators
from nlhf_jax import metrics as metrics_lib
from nlhf_jax import optimizers
from nlhf_jax import partitioning
from nlhf_jax import train_state as train_state_lib
from nlhf_jax.errors import ConfigError

TrainState = train_state_lib.TrainState
StepFn = train_state_lib.StepFn
Evaluator = train_state_lib.Evaluator
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
  optimizer: optimizers.OptimizerConfig = optimizers.OptimizerConfig()
  checkpoint: checkpointing.CheckpointConfig = (
      checkpointing.CheckpointConfig())

  def __post_init__(self):
    for name in ("steps", "batch_size", "log_every"):
      if getattr(self, name) < 1:
        raise ConfigError(f"TrainConfig.{name} must be >= 1, got "
                          f"{getattr(self, name)!r}.")
    for name in ("eval_every", "eval_batches", "eval_batch_size"):
      if getattr(self, name) < 0:
        raise ConfigError(f"TrainConfig.{name} must be >= 0, got "
                          f"{getattr(self, name)!r}.")
    if self.nan_policy not in NAN_POLICIES:
      raise ConfigError(f"TrainConfig.nan_policy must be one of "
                        f"{NAN_POLICIES}, got {self.nan_policy!r}.")


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


def _guarded_step(step_fn: StepFn, skip_nonfinite: bool,
                  trace_count: list[int]) -> Callable[..., Any]:
  """Adds the step RNG, the finiteness flag and (optionally) skipping."""

  def step(state, batch, base_rng, *frozen):
    trace_count[0] += 1
    rng = jax.random.fold_in(base_rng, state.step)
    new_state, metrics = step_fn(state, batch, rng, *frozen)
    if "loss" not in metrics:
      raise KeyError("The step function's metrics must include 'loss'.")
    finite = jnp.isfinite(metrics["loss"])
    if skip_nonfinite:
      new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                               new_state, state)
      new_state = new_state.replace(step=state.step + 1)
    return new_state, dict(metrics, finite=finite)

  return step


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


def _initial_state(workdir: str, mesh: Mesh,
                   init_fn: Callable[[], Any], tx: Any,
                   initial_params_fn: Optional[Callable[..., Any]],
                   with_ema: bool, checkpointer: checkpointing.Checkpointer,
                   data_iter: Any) -> tuple[TrainState, TrainState, int]:
  """Resumes the newest intact checkpoint, else initialises (sharded)."""
  boxed = jax.eval_shape(init_fn)
  create = lambda p: TrainState.create(p, tx, with_ema=with_ema)
  abstract_state = jax.eval_shape(create, nn.unbox(boxed))
  shardings = train_state_lib.state_shardings(abstract_state, boxed, mesh)
  abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      abstract_state, shardings)
  restored = checkpointer.restore_latest(abstract)
  if restored is not None:
    if restored.data_state:
      data_iter.set_state(restored.data_state)
    print(f"Resumed from the checkpoint at step {restored.step} in "
          f"{checkpointer.directory}.", flush=True)
    return restored.state, shardings, restored.step
  fresh = lambda: jax.jit(lambda: nn.unbox(init_fn()),
                          out_shardings=shardings.params)()
  if initial_params_fn is None:
    params = fresh()
  else:
    params = initial_params_fn(abstract.params, fresh)
  state = jax.jit(create, in_shardings=(shardings.params,),
                  out_shardings=shardings)(params)
  _write_model_info(workdir, state.params, shardings.params)
  return state, shardings, 0


def train(*, config: TrainConfig, workdir: str, mesh: Mesh,
          init_fn: Callable[[], Any], step_fn: StepFn,
          train_data: data_iterators.StatefulIterator,
          evaluator: Optional[Evaluator] = None,
          eval_data: Optional[Callable[[], Any]] = None,
          initial_params_fn: Optional[Callable[..., Any]] = None,
          with_ema: bool = False,
          progress_keys: Optional[tuple[str, ...]] = None,
          hooks: Sequence[Callable[[int, TrainState], None]] = (),
          frozen: Optional[tuple[Any, Any]] = None) -> TrainResult:
  """Trains for `config.steps` steps (resuming from `workdir` if possible).

  Args:
    config: run settings.
    workdir: checkpoints, metrics.jsonl, model_info.txt go here.
    mesh: device mesh.
    init_fn: returns logically boxed initial parameters (randomness closed
      over); only traced for shapes when resuming or `initial_params_fn`
      provides the parameters.
    step_fn: the algorithm's train step; its metrics must include 'loss'.
    train_data: resumable iterator of host batches (this process's rows).
    evaluator: optional evaluation; needs `eval_data`.
    eval_data: returns a fresh one-pass iterator over evaluation batches.
    initial_params_fn: (abstract params with shardings, fresh_fn) -> params;
      e.g. pretrained weights via `checkpointing.load_initial_params`.
    with_ema: keep EMA parameters in the state.
    progress_keys: metrics shown on the console (default: all).
    hooks: called as hook(step, state) after every step (e.g. custom logging).
    frozen: optional (params, shardings) of read-only models (reference,
      preference or reward model), passed to `step_fn` as a fourth argument
      `frozen` and to the jitted step as sharded inputs (never donated or
      checkpointed).

  Returns:
    A TrainResult; `preempted` is True if a SIGTERM cut the run short (a
    checkpoint of the reached step was saved).

  Raises:
    NonFiniteLossError: a non-finite loss under nan_policy='stop'.
  """
  if not isinstance(workdir, str) or not workdir:
    raise ConfigError(f"workdir must be a path string (gin macro WORKDIR), "
                      f"got {workdir!r}.")
  if (evaluator is None) != (eval_data is None):
    raise ValueError("Pass both evaluator and eval_data, or neither.")
  data_devices = mesh.shape["data"] * mesh.shape["fsdp"]
  for name in ("batch_size", "eval_batch_size"):
    if getattr(config, name) % data_devices:
      raise ConfigError(f"TrainConfig.{name}={getattr(config, name)} must be "
                        f"a multiple of the mesh's data x fsdp size "
                        f"{data_devices}.")
  tx = optimizers.make_optimizer(config.optimizer, config.steps)
  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint)
  writer = metrics_lib.MetricWriter(workdir, config.tensorboard)
  try:
    state, shardings, start = _initial_state(
        workdir, mesh, init_fn, tx, initial_params_fn, with_ema,
        checkpointer, train_data)
    loop = _TrainLoop(config, mesh, shardings, start, step_fn, train_data,
                      evaluator, eval_data, checkpointer, writer,
                      progress_keys, frozen)
    with partitioning.activate(mesh):
      return loop.run(state, start, hooks)
  finally:
    writer.close()
    checkpointer.close()


class _TrainLoop:
  """The step loop of `train` (see there): one instance per run."""

  def __init__(self, config, mesh, shardings, start, step_fn, train_data,
               evaluator, eval_data, checkpointer, writer, progress_keys,
               frozen):
    self.config, self.train_data = config, train_data
    self.evaluator, self.eval_data = evaluator, eval_data
    self.checkpointer, self.writer = checkpointer, writer
    self.batch_sharding = partitioning.batch_sharding(mesh)
    replicated = partitioning.replicated(mesh)
    self.traces = [0]
    self.frozen_args = (frozen[0],) if frozen else ()
    frozen_shardings = (frozen[1],) if frozen else ()
    self.step_fn = jax.jit(
        _guarded_step(step_fn, config.nan_policy == "skip", self.traces),
        in_shardings=(shardings, self.batch_sharding, replicated) +
        frozen_shardings,
        out_shardings=(shardings, replicated), donate_argnums=0)
    self.eval_step = None
    if evaluator is not None:
      self.eval_step = jax.jit(evaluator.step,
                               in_shardings=(shardings, self.batch_sharding))
    self.base_rng = jax.device_put(jax.random.PRNGKey(config.seed),
                                   replicated)
    self.window = _MetricWindow(config.nan_policy)
    self.progress = metrics_lib.ProgressReporter(config.steps, start,
                                                 progress_keys)
    self.is_primary = jax.process_index() == 0
    self.train_metrics, self.eval_metrics = {}, {}
    self.last_saved = start

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
                       preempted, self.window.skipped, self.traces[0])

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
        state, metrics = self.step_fn(state, batch, self.base_rng,
                                      *self.frozen_args)
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
    return self.result(state, step, preempted=False)


def run_job(*, config: TrainConfig, workdir: str,
            mesh_config: partitioning.MeshConfig, init_fn: Callable[[], Any],
            step_fn: StepFn, data: data_iterators.DataSource,
            evaluator: Optional[Evaluator] = None,
            model_config: Any = None,
            init: checkpointing.InitConfig = checkpointing.InitConfig(),
            allow_missing: Sequence[str] = (),
            ignore_unused: Sequence[str] = (),
            progress_keys: Optional[tuple[str, ...]] = None,
            with_ema: bool = False,
            frozen: Optional[tuple[Any, Any]] = None) -> TrainResult:
  """`train` with the mesh, data iterators and initial parameters set up.

  Args:
    config: run settings.
    workdir: output directory.
    mesh_config: the device mesh.
    init_fn: boxed parameter initialiser of the model.
    step_fn: the algorithm's step.
    data: the dataset (train iterator, eval iterator); this process reads
      its share of every global batch.
    evaluator: optional evaluation on `data.eval_iterator`.
    model_config: T5Config of the model (for pretrained imports).
    init: pretrained / params-only initialisation (None path: random).
    allow_missing: parameter prefixes the checkpoint may lack (new heads).
    ignore_unused: checkpoint prefixes the model does not use.
    progress_keys: metrics shown on the console.
    with_ema: keep EMA parameters.
    frozen: read-only (params, shardings) passed to the step (see `train`).

  Returns:
    The TrainResult of `train`.
  """
  mesh = partitioning.make_mesh(mesh_config)
  index, count = jax.process_index(), jax.process_count()
  train_data = data.train_iterator(config.batch_size, config.seed, index,
                                   count)
  eval_size = config.eval_batch_size or config.batch_size
  eval_data = None
  if evaluator is not None:
    eval_data = lambda: data.eval_iterator(eval_size, index, count)
  initial = None
  if init.path is not None:
    initial = lambda abstract, fresh: checkpointing.load_initial_params(
        init, model_config, abstract, fresh, allow_missing=allow_missing,
        ignore_unused=ignore_unused)
  return train(config=config, workdir=workdir, mesh=mesh, init_fn=init_fn,
               step_fn=step_fn, train_data=train_data, evaluator=evaluator,
               eval_data=eval_data, initial_params_fn=initial,
               with_ema=with_ema, progress_keys=progress_keys,
               frozen=frozen)
