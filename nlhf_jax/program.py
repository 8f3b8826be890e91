"""The Program: a sharded train state and the one jitted step that updates it.

Everything that compiles or runs a train step goes through `build`, so the
state layout, the batch and frozen-model shardings, the donation and the
step guard exist once:

* the trainer (`trainer.train`) initialises or restores the state at
  `Program.abstract_state` and calls `Program.step` every step;
* `aot` lowers and compiles the same `Program.step` for a TPU topology
  (`Program.lower`) for the README's memory table;
* the online job restores the frozen models at `Program.abstract_frozen`,
  and evaluation restores single-device parameters at `abstract_params`;
* the benchmarks time `Program.step`.

The compiled step is

  step(state, batch, base_rng[, frozen]) -> (state, metrics)

with the algorithm's `step_fn(state, batch, rng[, frozen])` inside the
guard: the step RNG is `fold_in(base_rng, state.step)` (so a resumed run
repeats the uninterrupted one bit for bit), `metrics['finite']` flags a
non-finite loss, and with `skip_nonfinite` such an update is discarded (the
step counter still advances). The state is donated; the batch is split over
(data, fsdp); the frozen models are sharded arguments, never donated.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
import optax

from nlhf_jax import partitioning
from nlhf_jax import stage_timing
from nlhf_jax import train_state as train_state_lib

PyTree = Any
TrainState = train_state_lib.TrainState
Frozen = train_state_lib.Frozen
BoxedInit = Callable[[], PyTree]


def abstract_params(init_fn: BoxedInit, mesh: Optional[Mesh] = None,
                    rules=partitioning.LOGICAL_AXIS_RULES) -> PyTree:
  """Shapes of `nn.unbox(init_fn())` with their shardings; no allocation.

  Args:
    init_fn: returns logically boxed parameters (only traced).
    mesh: target mesh; None places every leaf on the default device
      (evaluation, which runs without a mesh).
    rules: logical-axis rules.

  Returns:
    A tree of `jax.ShapeDtypeStruct`s with `.sharding` set, the target of
    `checkpointing.restore_params`.
  """
  boxed = jax.eval_shape(init_fn)
  if mesh is None:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: device, nn.unbox(boxed))
  else:
    shardings = partitioning.logical_shardings(boxed, mesh, rules)
  return partitioning.abstract_with_shardings(nn.unbox(boxed), shardings)


def shardings_of(abstract: PyTree) -> PyTree:
  """The `.sharding` of every leaf of an abstract tree."""
  return jax.tree.map(lambda x: x.sharding, abstract)


def _guarded(step_fn: Callable[..., Any], skip_nonfinite: bool,
             trace_count: list[int]) -> Callable[..., Any]:
  """The step RNG, the finiteness flag and (optionally) skipping."""

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


@dataclasses.dataclass(frozen=True)
class Program:
  """A compiled-on-first-call train step and the layout of what it reads.

  Build with `build`. Attributes:
    mesh: the device mesh.
    abstract_state: the TrainState as ShapeDtypeStructs with shardings.
    state_shardings: a TrainState of NamedShardings.
    batch_sharding: host batches' sharding (leading dim over data, fsdp).
    abstract_frozen: a `Frozen` of abstract parameters with shardings, or
      None for a step without frozen models.
    step: the jitted guarded step (module docstring).
    stage_prefixes: {stage: the step's prefix program up to that stage's
      mark} (`stage_timing`; same arguments as `step`, nothing donated),
      or None for a step without stage marks.
  """

  mesh: Mesh
  abstract_state: TrainState
  state_shardings: TrainState
  batch_sharding: NamedSharding
  abstract_frozen: Optional[Frozen]
  step: Any
  stage_prefixes: Optional[Mapping[str, Any]]
  _init_fn: BoxedInit
  _tx: optax.GradientTransformation
  _with_ema: bool
  _with_anchor: bool
  _traces: list[int]

  @property
  def num_traces(self) -> int:
    """How many times `step` was traced (1 per compilation)."""
    return self._traces[0]

  @property
  def frozen_shardings(self) -> Optional[Frozen]:
    if self.abstract_frozen is None:
      return None
    return shardings_of(self.abstract_frozen)

  def fresh_params(self) -> PyTree:
    """Randomly initialised parameters, created already sharded."""
    return partitioning.sharded_init(self._init_fn, self.mesh)[0]

  def create_state(self, params: PyTree) -> TrainState:
    """A step-0 TrainState on `params` (laid out as `state_shardings`)."""
    create = lambda p: TrainState.create(p, self._tx,
                                         with_ema=self._with_ema,
                                         with_anchor=self._with_anchor)
    return jax.jit(create, in_shardings=(self.state_shardings.params,),
                   out_shardings=self.state_shardings)(params)

  def jit_eval(self, eval_step: Callable[..., Any],
               with_frozen: bool = False) -> Any:
    """`eval_step(state, batch[, frozen])` jitted with this program's
    shardings."""
    shardings = (self.state_shardings, self.batch_sharding)
    if with_frozen:
      if self.abstract_frozen is None:
        raise ValueError("An evaluator that reads the frozen models needs a "
                         "program built with frozen_init.")
      shardings += (self.frozen_shardings,)
    return jax.jit(eval_step, in_shardings=shardings)

  def abstract_args(self, batch: Mapping[str, jax.ShapeDtypeStruct]
                    ) -> tuple[Any, ...]:
    """Abstract arguments of `step` for a batch of these shapes."""
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32,
                               sharding=partitioning.replicated(self.mesh))
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype,
                                     sharding=self.batch_sharding)
             for k, v in batch.items()}
    frozen = () if self.abstract_frozen is None else (self.abstract_frozen,)
    return (self.abstract_state, batch, rng) + frozen

  def lower(self, batch: Mapping[str, jax.ShapeDtypeStruct]
            ) -> jax.stages.Lowered:
    """Lowers `step` for batches of these shapes (nothing is allocated)."""
    with partitioning.activate(self.mesh):
      return self.step.lower(*self.abstract_args(batch))


def build(*, mesh: Mesh, init_fn: BoxedInit,
          tx: optax.GradientTransformation, step_fn: Callable[..., Any],
          with_ema: bool = False, with_anchor: bool = False,
          frozen_init: Optional[Frozen] = None,
          skip_nonfinite: bool = False, timed_stages: bool = False,
          rules=partitioning.LOGICAL_AXIS_RULES) -> Program:
  """The Program of one algorithm's step on `mesh` (module docstring).

  Args:
    mesh: the device mesh.
    init_fn: returns the trained model's logically boxed parameters
      (randomness closed over); only traced here.
    tx: the optimizer.
    step_fn: the algorithm's `step(state, batch, rng[, frozen])`; its
      metrics must include 'loss'.
    with_ema: keep EMA parameters in the state (Nash-EMA-PG).
    with_anchor: keep an anchor copy of the parameters (Nash Prox, MPO).
    frozen_init: a `Frozen` of boxed initialisers of the frozen models
      (fields left None stay None), or None for a supervised step.
    skip_nonfinite: discard updates whose loss is not finite.
    timed_stages: `step_fn` marks its sampling and judging stages
      (`stage_timing.mark`): build their prefix programs.
    rules: logical-axis rules.

  Returns:
    The Program; nothing is compiled until `step` is called or lowered.
  """
  boxed = jax.eval_shape(init_fn)
  create = lambda p: TrainState.create(p, tx, with_ema=with_ema,
                                       with_anchor=with_anchor)
  abstract = jax.eval_shape(create, nn.unbox(boxed))
  state_sh = train_state_lib.state_shardings(abstract, boxed, mesh, rules)
  abstract_frozen = None
  if frozen_init is not None:
    abstract_frozen = jax.tree.map(
        lambda f: abstract_params(f, mesh, rules), frozen_init)
  batch_sh = partitioning.batch_sharding(mesh)
  replicated = partitioning.replicated(mesh)
  traces = [0]
  frozen_sh = () if abstract_frozen is None else (
      shardings_of(abstract_frozen),)
  step = jax.jit(_guarded(step_fn, skip_nonfinite, traces),
                 in_shardings=(state_sh, batch_sh, replicated) + frozen_sh,
                 out_shardings=(state_sh, replicated), donate_argnums=0)
  prefixes = None
  if timed_stages:
    plain = _guarded(step_fn, False, [0])  # Not counted as step traces.
    prefixes = {stage: jax.jit(stage_timing.prefix(plain, stage),
                               in_shardings=(state_sh, batch_sh, replicated)
                               + frozen_sh)
                for stage in stage_timing.MARKED_STAGES}
  return Program(
      mesh=mesh,
      abstract_state=partitioning.abstract_with_shardings(abstract,
                                                         state_sh),
      state_shardings=state_sh, batch_sharding=batch_sh,
      abstract_frozen=abstract_frozen, step=step, stage_prefixes=prefixes,
      _init_fn=init_fn, _tx=tx,
      _with_ema=with_ema, _with_anchor=with_anchor, _traces=traces)
