"""Train state of the optimised model and the read-only frozen models.

`TrainState` holds what changes during training (step, params, optimizer
state, optional EMA params for Nash-EMA-PG, an optional anchor copy for
Nash Prox and MPO). Parameters that are only read
(the reference policy μ, the judge: preference or reward model) travel as a
`Frozen`, one field per role, and never enter an optimizer.

Sharding: parameters carry logical axis names from the Flax modules;
`state_shardings` maps them, and the optimizer-state leaves derived from
each parameter, to `NamedSharding`s with the one rule table of
`partitioning`. `nlhf_jax.program` builds the state directly in that
layout (eval_shape -> shardings -> jit with out_shardings), so no device
ever holds a full replica of a large model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

from flax import struct
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
import numpy as np
import optax

from nlhf_jax import partitioning

PyTree = Any


class TrainState(struct.PyTreeNode):
  """Step, parameters and optimizer state of the model being trained.

  Attributes:
    step: int32 scalar, number of updates applied.
    params: parameter pytree.
    opt_state: optax state of `tx`.
    ema_params: exponential moving average of `params` (Nash-EMA-PG's
      opponent) or None.
    anchor_params: a copy of `params` that the algorithm refreshes on its
      schedule (Nash Prox's previous iterate π_k, MPO's magnet) or None.
    tx: the optax transformation (static, not saved in checkpoints).
  """

  step: jax.Array
  params: PyTree
  opt_state: PyTree
  ema_params: Optional[PyTree]
  anchor_params: Optional[PyTree]
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  @classmethod
  def create(cls, params: PyTree, tx: optax.GradientTransformation, *,
             with_ema: bool = False,
             with_anchor: bool = False) -> "TrainState":
    """Fresh state at step 0 (EMA and anchor start as copies of `params`)."""
    copy = lambda keep: jax.tree.map(jnp.copy, params) if keep else None
    return cls(step=jnp.zeros((), jnp.int32), params=params,
               opt_state=tx.init(params), ema_params=copy(with_ema),
               anchor_params=copy(with_anchor), tx=tx)

  def apply_gradients(self, grads: PyTree) -> "TrainState":
    """One optimizer update; increments `step`. EMA and anchor unchanged."""
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    return self.replace(step=self.step + 1, params=params,
                        opt_state=opt_state)


# The contract between an algorithm and the trainer: an algorithm's
# `make_train_step` returns a StepFn, `step(state, batch, rng[, frozen]) ->
# (state, metrics)`; online steps take the frozen parameters as a fourth
# argument. Its metrics must include 'loss'.
StepFn = Callable[..., tuple[TrainState, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """Evaluation of an algorithm (returned by its `make_evaluator`).

  Attributes:
    step: (state, batch[, frozen]) -> {name: per-example array [b]};
      jitted by the trainer. Rows with `batch['valid'] == False` (padding)
      are dropped.
    summarize: per-example arrays of the whole evaluation (NumPy) -> scalar
      metrics.
    uses_frozen: `step` also takes the frozen models (`Frozen`, e.g. the
      reference μ) as a third argument.
  """

  step: Callable[..., dict[str, jax.Array]]
  summarize: Callable[[Mapping[str, np.ndarray]], dict[str, float]]
  uses_frozen: bool = False


class Frozen(struct.PyTreeNode):
  """The fixed models an online step reads, one field per role.

  The same container carries the parameters, their abstract shapes with
  shardings (`program.Program.abstract_frozen`) and their initialisers
  (`program.build(frozen_init=...)`).

  Attributes:
    reference: the reference policy μ (the SFT model): the mixture's and
      the KL's second model.
    judge: the preference model (Nash methods, Online IPO) or the reward
      model (RLHF); None for a judge without parameters.
  """

  reference: Optional[PyTree] = None
  judge: Optional[PyTree] = None


def _key_name(key: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _derived_axes(leaf_shape: tuple[int, ...], param_shape: tuple[int, ...],
                  param_axes: tuple[Any, ...]) -> tuple[Any, ...]:
  """Logical axes of an optimizer leaf derived from its parameter.

  Same shape: the parameter's axes. One dimension fewer (Adafactor's
  factored row/column statistics): the axes with that dimension removed.
  Anything else (e.g. Adafactor's (1,) placeholders): replicated.
  """
  if leaf_shape == param_shape:
    return param_axes
  if len(leaf_shape) == len(param_shape) - 1:
    for drop in reversed(range(len(param_shape))):
      if param_shape[:drop] + param_shape[drop + 1:] == leaf_shape:
        return param_axes[:drop] + param_axes[drop + 1:]
  return (None,) * len(leaf_shape)


def _param_index(abstract_params: PyTree,
                 param_axes: PyTree) -> dict[tuple[str, ...], Any]:
  flat = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
  axes = jax.tree.leaves(param_axes,
                         is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  if len(flat) != len(axes):
    raise ValueError(f"Parameter tree has {len(flat)} leaves but its axes "
                     f"tree has {len(axes)}.")
  index = {}
  for (path, leaf), spec in zip(flat, axes):
    spec = tuple(spec) + (None,) * (len(leaf.shape) - len(tuple(spec)))
    index[tuple(_key_name(k) for k in path)] = (tuple(leaf.shape), spec)
  return index


def tree_logical_axes(tree: PyTree, abstract_params: PyTree,
                      param_axes: PyTree) -> PyTree:
  """Logical axes for every leaf of `tree` (params, EMA, optimizer state).

  A leaf whose key path ends with a parameter's path inherits (or derives,
  see `_derived_axes`) that parameter's axes; other leaves are replicated.
  """
  index = _param_index(abstract_params, param_axes)

  def axes_of(path, leaf):
    names = tuple(_key_name(k) for k in path)
    shape = tuple(getattr(leaf, "shape", ()))
    for i in range(len(names)):
      if names[i:] in index:
        p_shape, p_axes = index[names[i:]]
        return _derived_axes(shape, p_shape, p_axes)
    return (None,) * len(shape)

  return jax.tree_util.tree_map_with_path(axes_of, tree)


def tree_shardings(tree: PyTree, logical_axes: PyTree, mesh: Mesh,
                   rules=partitioning.LOGICAL_AXIS_RULES) -> PyTree:
  """NamedShardings from per-leaf logical axes (indivisible -> replicated)."""
  def one(leaf, axes):
    spec = partitioning.logical_to_mesh_spec(axes, leaf.shape, mesh, rules)
    return NamedSharding(mesh, spec)

  # `logical_axes` has a tuple where `tree` has a leaf: tree.map passes it
  # whole.
  return jax.tree.map(one, tree, logical_axes)


def state_shardings(abstract_state: TrainState, abstract_boxed: PyTree,
                    mesh: Mesh,
                    rules=partitioning.LOGICAL_AXIS_RULES) -> TrainState:
  """Shardings of every leaf of a TrainState built on these parameters."""
  abstract_params = nn.unbox(abstract_boxed)
  axes = nn.get_partition_spec(abstract_boxed)
  logical = tree_logical_axes(abstract_state, abstract_params, axes)
  return tree_shardings(abstract_state, logical, mesh, rules)
