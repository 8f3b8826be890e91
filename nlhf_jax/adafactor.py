"""Adafactor with `optax.adafactor`'s arithmetic and state, in fewer passes.

`optax.adafactor` (the T5X setting: factored second moments, decay 0.8,
update clipping 1.0, updates scaled by the parameter RMS) is a chain of
small transformations. Two of them cost far more than their arithmetic on
XLA:CPU: `scale_by_factored_rms` takes `x ** -0.5` (a `pow`, not `rsqrt`),
and `scale_by_param_block_rms` uses `safe_root_mean_squares`, which is
written for gradients *through* it: it reduces each parameter twice and
selects over a full copy of it. On the SFT benchmark step (T5 1.1 small,
77 M parameters, 2-core CPU) the optax update took 0.31 s of a 1.14 s step.

`adafactor` below is the same chain with those two stages replaced by
equivalents that compute the same values (`rsqrt`; `max(rms(p), 1e-3)`,
one reduction) and keep the same state, so `init` is optax's and
checkpoints, sharding rules and AOT memory figures are unchanged. Per
parameter with gradient g, step t (from 0) and decay β_t = 1 - (t+1)^-0.8:

  v_t = β_t v_{t-1} + (1 - β_t)(g² + ε)   (factored: row and column
                                           means r, c; v̂ = r c / mean(r))
  u   = g / sqrt(v̂_t)
  u   = u / max(1, rms(u) / clip)
  Δp  = -lr_t · max(rms(p), 1e-3) · u       (+ weight decay when enabled).

Those two rewrites compute the same values with fewer operations on every
backend, so both variants below use them. One further trick is specific to
XLA:CPU and is a named choice, `pairwise_means` (`OptimizerConfig.name`
'adafactor_fused'; bound by gin_configs/backends/cpu.gin): the factored
moments' mean over a non-minor axis as a tree of sums of halves (see
`axis_mean`). It is off by default ('adafactor'): on TPU and GPU the plain
reduction is as fast and halving an axis that is sharded would move data
between devices. docs/cpu_speedups.md has the measurements.

`tests/adafactor_test.py` checks updates and states of both variants against
`optax.adafactor` step by step, and against each other.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

class _Slot(NamedTuple):
  """One parameter's scaled update and new second moments."""
  update: jax.Array
  v_row: jax.Array
  v_col: jax.Array
  v: jax.Array


def factored_dims(shape: tuple[int, ...],
                  min_dim_size_to_factor: int) -> Optional[tuple[int, int]]:
  """(second largest, largest) axis when the moment is factored, else None.

  As `optax.scale_by_factored_rms`: a parameter with at least two axes is
  factored over its two largest ones if the smaller of them has at least
  `min_dim_size_to_factor` entries.
  """
  if len(shape) < 2:
    return None
  order = np.argsort(shape)
  if shape[order[-2]] < min_dim_size_to_factor:
    return None
  return int(order[-2]), int(order[-1])


def _pairwise_mean(x: jax.Array, axis: int) -> jax.Array:
  """Mean over `axis` as a tree of elementwise sums of halves."""
  n = x.shape[axis]
  x = jnp.moveaxis(x, axis, 0)
  while x.shape[0] > 1:
    half = x.shape[0] // 2
    summed = x[:half] + x[half:2 * half]
    x = (jnp.concatenate([summed, x[2 * half:]]) if x.shape[0] % 2
         else summed)
  return x[0] / n


def axis_mean(x: jax.Array, axis: int, pairwise: bool = False) -> jax.Array:
  """jnp.mean(x, axis); with `pairwise`, fast on XLA:CPU for a non-minor axis.

  XLA:CPU reduces a non-minor axis about 5x slower than a sum of halves
  (53 against 11 ms for the column means of a [512, 32128] matrix on the
  2-core development machine), and every factored matrix has one such
  mean. `pairwise=False` (the portable choice) is the plain reduction:
  halving an axis that is sharded would move data between devices. The two
  agree to float32 rounding (summation order).
  """
  if not pairwise or axis in (-1, x.ndim - 1):
    return jnp.mean(x, axis)
  return _pairwise_mean(x, axis)


def _factored_update(g: jax.Array, v_row: jax.Array, v_col: jax.Array,
                     v: jax.Array, beta: jax.Array,
                     dims: Optional[tuple[int, int]],
                     epsilon: float, pairwise_means: bool) -> _Slot:
  """u = g / sqrt(v̂) and the new moments of one parameter.

  Unfactored parameters keep the (1,)-shaped placeholders in v_row / v_col
  and update the full `v`; factored ones the reverse (optax's layout).
  """
  g_sq = g * g + epsilon
  if dims is None:
    v = (beta * v + (1.0 - beta) * g_sq).astype(g.dtype)
    return _Slot(g * jax.lax.rsqrt(v), v_row, v_col, v)
  d1, d0 = dims
  mean = lambda axis: axis_mean(g_sq, axis, pairwise_means)
  v_row = (beta * v_row + (1.0 - beta) * mean(d0)).astype(g.dtype)
  v_col = (beta * v_col + (1.0 - beta) * mean(d1)).astype(g.dtype)
  reduced_d1 = d1 - 1 if d1 > d0 else d1
  row_factor = jax.lax.rsqrt(v_row / v_row.mean(reduced_d1, keepdims=True))
  col_factor = jax.lax.rsqrt(v_col)
  update = (g * jnp.expand_dims(row_factor, d0) *
            jnp.expand_dims(col_factor, d1))
  return _Slot(update, v_row, v_col, v)


def scale_by_factored_rms(decay_rate: float = 0.8,
                          min_dim_size_to_factor: int = 128,
                          epsilon: float = 1e-30,
                          pairwise_means: bool = False
                          ) -> optax.GradientTransformation:
  """`optax.scale_by_factored_rms` (same state) computed with `rsqrt`.

  `pairwise_means` selects the XLA:CPU reduction of `axis_mean`.
  """
  reference = optax.scale_by_factored_rms(
      decay_rate=decay_rate, min_dim_size_to_factor=min_dim_size_to_factor,
      epsilon=epsilon)

  def update_fn(updates, state, params=None):
    del params
    t = (state.count + 1).astype(jnp.float32)
    beta = 1.0 - t ** (-decay_rate)
    out = jax.tree.map(
        lambda g, r, c, v: _factored_update(
            g, r, c, v, beta,
            factored_dims(g.shape, min_dim_size_to_factor), epsilon,
            pairwise_means),
        updates, state.v_row, state.v_col, state.v)
    is_slot = lambda x: isinstance(x, _Slot)
    field = lambda name: jax.tree.map(lambda s: getattr(s, name), out,
                                      is_leaf=is_slot)
    count = jnp.where(state.count < jnp.iinfo(jnp.int32).max,
                      state.count + 1, state.count)
    return field("update"), state._replace(
        count=count, v_row=field("v_row"), v_col=field("v_col"),
        v=field("v"))

  return optax.GradientTransformation(reference.init, update_fn)


def scale_by_param_rms(min_scale: float = 1e-3
                       ) -> optax.GradientTransformation:
  """u · max(rms(p), min_scale) per parameter (one reduction of p)."""

  def update_fn(updates, state, params):
    if params is None:
      raise ValueError("scale_by_param_rms needs the parameters.")
    scale = lambda p: jnp.maximum(jnp.sqrt(jnp.mean(p * p)), min_scale)
    return jax.tree.map(lambda u, p: u * scale(p), updates, params), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def adafactor(learning_rate: optax.ScalarOrSchedule,
              decay_rate: float = 0.8,
              clipping_threshold: Optional[float] = 1.0,
              multiply_by_parameter_scale: bool = True,
              weight_decay_rate: Optional[float] = None,
              min_dim_size_to_factor: int = 128,
              epsilon: float = 1e-30,
              pairwise_means: bool = False) -> optax.GradientTransformation:
  """Drop-in for `optax.adafactor(...)` with these arguments (no momentum).

  The returned transformation's state has the structure of the optax one
  with the same arguments, whichever `pairwise_means` (True: the XLA:CPU
  variant, `OptimizerConfig.name='adafactor_fused'`).
  """
  chain = [scale_by_factored_rms(decay_rate, min_dim_size_to_factor,
                                 epsilon, pairwise_means)]
  if clipping_threshold is not None:
    chain.append(optax.clip_by_block_rms(clipping_threshold))
  chain.append(optax.scale_by_learning_rate(learning_rate, flip_sign=False))
  if multiply_by_parameter_scale:
    chain.append(scale_by_param_rms())
  if weight_decay_rate is not None:
    chain.append(optax.add_decayed_weights(weight_decay_rate))
  chain.append(optax.scale(-1))
  return optax.chain(*chain)
