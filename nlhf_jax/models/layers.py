"""T5 1.1 building blocks in Flax linen, annotated with logical axis names.

Every parameter is created through `nn.with_logical_partitioning`, so its
logical axes (`vocab`, `embed`, `heads`, `kv`, `mlp`, `relpos_buckets`) travel
with it; `nlhf_jax.partitioning` maps them to mesh axes in one place. Key
activations are constrained with logical names prefixed `act_`.

Shape suffixes: b = batch, q = query length, k = key length, e = d_model,
h = heads, d = d_kv, f = d_ff, v = vocab.
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
DType = jnp.dtype

# Logical names of activations (see partitioning.LOGICAL_AXIS_RULES).
ACT_BTE = ("act_batch", "act_length", "act_embed")
ACT_BHTD = ("act_batch", "act_heads", "act_length", "act_kv")
ACT_BTF = ("act_batch", "act_length", "act_mlp")
ACT_BTV = ("act_batch", "act_length", "act_vocab")


def constrain(x: Array, axes: tuple[str, ...]) -> Array:
  """Logical sharding constraint; a no-op outside a mesh context."""
  return nn.with_logical_constraint(x, axes)


def _init(std_fn, axes: tuple[str, ...]):
  """Truncated-free normal init with fan-dependent std, logically partitioned."""
  return nn.with_logical_partitioning(std_fn, axes)


def normal_init(std: float):
  def init(key, shape, dtype=jnp.float32):
    return std * jax.random.normal(key, shape, dtype)
  return init


class RMSNorm(nn.Module):
  """T5 layer norm: x * rsqrt(mean(x^2) + eps) * scale (no mean, no bias)."""

  epsilon: float = 1e-6
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param(
        "scale", _init(nn.initializers.ones, ("embed",)), (x.shape[-1],),
        self.param_dtype)
    x32 = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = x32 * jax.lax.rsqrt(var + self.epsilon)
    return (y * scale.astype(jnp.float32)).astype(self.dtype)


def relative_position_bucket(relative_position: Array, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> Array:
  """Maps key-minus-query offsets to T5 relative-position buckets.

  Half the buckets (per direction) hold exact offsets 0..max_exact-1, the rest
  are logarithmically spaced up to `max_distance`; larger offsets share the last
  bucket. Unidirectional (decoder) attention only looks at the past.

  Args:
    relative_position: int array, memory_position - query_position.
    bidirectional: whether future offsets get their own buckets.
    num_buckets: total number of buckets.
    max_distance: offset beyond which all positions share a bucket.

  Returns:
    int32 array of bucket ids with the shape of `relative_position`.
  """
  ret = jnp.zeros_like(relative_position)
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    ret += (n < 0).astype(jnp.int32) * num_buckets
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  n_safe = jnp.maximum(n, 1).astype(jnp.float32)
  val_if_large = max_exact + (
      jnp.log(n_safe / max_exact) / math.log(max_distance / max_exact) *
      (num_buckets - max_exact)).astype(jnp.int32)
  val_if_large = jnp.minimum(val_if_large, num_buckets - 1)
  return (ret + jnp.where(is_small, n, val_if_large)).astype(jnp.int32)


class RelativePositionBias(nn.Module):
  """Learned per-head bias over relative-position buckets (one per stack)."""

  num_buckets: int
  max_distance: int
  num_heads: int
  bidirectional: bool
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, query_positions: Array, key_length: int) -> Array:
    """Returns the bias [1, h, q, k] for queries at `query_positions` [q]."""
    table = self.param(
        "rel_embedding",
        _init(nn.initializers.normal(1.0), ("relpos_buckets", "heads")),
        (self.num_buckets, self.num_heads), self.param_dtype)
    memory = jnp.arange(key_length, dtype=jnp.int32)[None, :]
    rel = memory - query_positions.astype(jnp.int32)[:, None]  # [q, k]
    buckets = relative_position_bucket(
        rel, self.bidirectional, self.num_buckets, self.max_distance)
    bias_qkh = jnp.take(table, buckets, axis=0)
    return jnp.transpose(bias_qkh, (2, 0, 1))[None].astype(self.dtype)


class MultiHeadAttention(nn.Module):
  """T5 attention (no 1/sqrt(d) scaling; it is folded into the init).

  Queries, keys and values are projected heads-major, [b, h, t, d], so the
  score and output products batch over (b, h) without transposing their
  operands: on XLA:CPU that took a [64, 263]-token, 2-head encoder
  layer's attention from 117 to 70 ms (the output product alone from 34 to
  9 ms); the projections write the layout directly.

  With `decode=True` the module keeps a key/value cache in the `cache`
  collection (`cached_key`, `cached_value` [b, h, max_len, d] and
  `cache_index`), writes the single new position and attends to all cached
  positions; masking of unwritten positions is the caller's job through
  `bias`.

  Cross-attention (`static_kv=True`, keys and values from the encoder
  output, which does not change while decoding) with `decode=True`
  projects them once, when the cache is created (`t5.init_decode_cache`
  runs the call that creates the variables on the real encoder output),
  into `cross_key`, `cross_value` [b, h, t, d]: a decoding step does not
  re-project them.
  """

  num_heads: int
  d_kv: int
  dropout_rate: float = 0.0
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  def _kernel(self, name: str, shape: tuple[int, ...], std: float,
              axes: tuple[str, ...]) -> Array:
    kernel = self.param(name, _init(normal_init(std), axes), shape,
                        self.param_dtype)
    return kernel.astype(self.dtype)

  def _project(self, x_bte: Array, kernel_ehd: Array) -> Array:
    return constrain(jnp.einsum("bte,ehd->bhtd", x_bte.astype(self.dtype),
                                kernel_ehd), ACT_BHTD)

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array,
               bias: Optional[Array] = None, *, decode: bool = False,
               static_kv: bool = False,
               enable_dropout: bool = False) -> Array:
    d_model = inputs_q.shape[-1]
    inner = self.num_heads * self.d_kv
    ehd = (d_model, self.num_heads, self.d_kv)
    axes = ("embed", "heads", "kv")
    w_q = self._kernel("query", ehd, (d_model * self.d_kv) ** -0.5, axes)
    w_k = self._kernel("key", ehd, d_model ** -0.5, axes)
    w_v = self._kernel("value", ehd, d_model ** -0.5, axes)
    query = self._project(inputs_q, w_q)
    if decode and static_kv:
      key = self.variable("cache", "cross_key",
                          lambda: self._project(inputs_kv, w_k)).value
      value = self.variable("cache", "cross_value",
                            lambda: self._project(inputs_kv, w_v)).value
    else:
      key = self._project(inputs_kv, w_k)
      value = self._project(inputs_kv, w_v)
      if decode:
        key, value = self._update_cache(key, value)

    scores = jnp.einsum("bhqd,bhkd->bhqk", query, key,
                        preferred_element_type=jnp.float32)
    if bias is not None:
      scores = scores + bias.astype(jnp.float32)
    weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
    if enable_dropout and self.dropout_rate > 0.0:
      weights = nn.Dropout(self.dropout_rate, deterministic=False)(weights)
    out = constrain(jnp.einsum("bhqk,bhkd->bhqd", weights, value), ACT_BHTD)
    w_o = self._kernel("out", (self.num_heads, self.d_kv, d_model),
                       inner ** -0.5, ("heads", "kv", "embed"))
    return jnp.einsum("bhqd,hde->bqe", out, w_o)

  def _update_cache(self, key: Array, value: Array) -> tuple[Array, Array]:
    """Writes the new step's key/value at `cache_index`; returns full caches."""
    is_initialized = self.has_variable("cache", "cached_key")
    cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape,
                               key.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros,
                                 value.shape, value.dtype)
    cache_index = self.variable("cache", "cache_index",
                                lambda: jnp.array(0, dtype=jnp.int32))
    if not is_initialized:
      # Initialisation call: shapes only (key carries the max length).
      return key, value
    if key.shape[2] != 1:
      raise ValueError(
          f"Cached decoding takes one position per call, got length "
          f"{key.shape[2]}.")
    idx = cache_index.value
    zero = jnp.array(0, dtype=jnp.int32)
    cached_key.value = jax.lax.dynamic_update_slice(
        cached_key.value, key.astype(cached_key.value.dtype),
        (zero, zero, idx, zero))
    cached_value.value = jax.lax.dynamic_update_slice(
        cached_value.value, value.astype(cached_value.value.dtype),
        (zero, zero, idx, zero))
    cache_index.value = idx + 1
    return cached_key.value, cached_value.value


class GatedGeluMlp(nn.Module):
  """T5 1.1 feed-forward: wo(gelu(wi_0 x) * wi_1 x), no biases."""

  d_ff: int
  dropout_rate: float = 0.0
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, enable_dropout: bool = False) -> Array:
    d_model = x.shape[-1]

    def dense(name, features, axes, fan_in):
      return nn.Dense(
          features, use_bias=False, dtype=self.dtype,
          param_dtype=self.param_dtype, name=name,
          kernel_init=_init(normal_init(fan_in ** -0.5), axes))

    gate = dense("wi_0", self.d_ff, ("embed", "mlp"), d_model)(x)
    linear = dense("wi_1", self.d_ff, ("embed", "mlp"), d_model)(x)
    h = jax.nn.gelu(gate, approximate=True) * linear
    h = constrain(h, ACT_BTF)
    if enable_dropout and self.dropout_rate > 0.0:
      h = nn.Dropout(self.dropout_rate, deterministic=False)(h)
    return dense("wo", d_model, ("mlp", "embed"), self.d_ff)(h)


# How the LM head's backward pass is computed (`T5Config.lm_head_backward`).
#   'xla': the einsum differentiated by JAX (portable; the default).
#   'cpu_barrier': `vocab_projection_cpu_barrier`, a hand-written backward
#     tuned for XLA:CPU (gin_configs/backends/cpu.gin; docs/cpu_speedups.md).
LM_HEAD_BACKWARDS = ("xla", "cpu_barrier")


def vocab_projection(h_bte: Array, kernel_ev: Array) -> Array:
  """Logits h @ W: [b, t, e] x [e, v] -> [b, t, v] (autodiff backward)."""
  return jnp.einsum("bte,ev->btv", h_bte, kernel_ev)


@jax.custom_vjp
def vocab_projection_cpu_barrier(h_bte: Array, kernel_ev: Array) -> Array:
  """`vocab_projection` with a backward written for XLA:CPU.

  The backward is written out so that the weight gradient is a plain
  matrix product: differentiating the einsum leaves XLA:CPU to transpose
  the [b·t, v] cotangent and call a slow transposed dot (69 ms against
  52 ms for [256, 512] x [256, 32128] on the 2-core development machine).
  Materialising hᵀ ([e, b·t], small) behind an optimisation barrier keeps
  the big operand in place. Values and gradients are those of the einsum;
  on other backends the barrier only stops XLA from choosing its own
  layout, so they use `vocab_projection` (lm_head_backward='xla').
  """
  return vocab_projection(h_bte, kernel_ev)


def _vocab_projection_fwd(h_bte, kernel_ev):
  return vocab_projection(h_bte, kernel_ev), (h_bte, kernel_ev)


def _vocab_projection_bwd(residuals, g_btv):
  h_bte, kernel_ev = residuals
  b, t, e = h_bte.shape
  g_nv = g_btv.reshape(b * t, -1)
  d_h = jnp.einsum("btv,ev->bte", g_btv, kernel_ev)
  h_en = jax.lax.optimization_barrier(h_bte.reshape(b * t, e).T)
  return d_h, (h_en @ g_nv).astype(kernel_ev.dtype)


vocab_projection_cpu_barrier.defvjp(_vocab_projection_fwd,
                                    _vocab_projection_bwd)


# How the gradient of a bias shared by the batch is summed over it
# (`T5Config.position_bias_backward`).
#   'xla': the broadcasting add differentiated by JAX (portable; default).
#   'batch_dot': `add_row_bias_batch_dot`, the sum as a dot with ones,
#     faster on XLA:CPU (gin_configs/backends/cpu.gin; docs/cpu_speedups.md).
POSITION_BIAS_BACKWARDS = ("xla", "batch_dot")


def add_row_bias(shared_1hqk: Array, rows_b11k: Array) -> Array:
  """The attention bias [b, h, q, k] = shared [1, h, q, k] + rows [b, 1, 1, k]."""
  return shared_1hqk + rows_b11k


@jax.custom_vjp
def add_row_bias_batch_dot(shared_1hqk: Array, rows_b11k: Array) -> Array:
  """`add_row_bias` whose backward sums over the batch with a dot.

  The shared part's cotangent is Σ_b g[b], a reduction over the leading
  axis of the [b, h, q, k] cotangent, which XLA:CPU runs slowly: 14.7 ms of
  a 113 ms forward and backward of the demo's T5 (batch 32, prompts 192)
  on the 2-core development machine. As the product gᵀ 1 over b it is a
  matrix-vector product (that forward and backward 1.1× faster). Values
  and gradients are those of `add_row_bias` up to summation order.
  """
  return add_row_bias(shared_1hqk, rows_b11k)


def _add_row_bias_fwd(shared_1hqk, rows_b11k):
  return add_row_bias(shared_1hqk, rows_b11k), None


def _add_row_bias_bwd(_, g_bhqk):
  ones_b = jnp.ones(g_bhqk.shape[:1], g_bhqk.dtype)
  d_shared = jnp.einsum("bhqk,b->hqk", g_bhqk, ones_b)[None]
  return d_shared, jnp.sum(g_bhqk, axis=(1, 2), keepdims=True)


add_row_bias_batch_dot.defvjp(_add_row_bias_fwd, _add_row_bias_bwd)


class VocabHead(nn.Module):
  """Untied LM head: float32 logits [b, t, v] from hidden states [b, t, e].

  Its parameter is `kernel` [e, v] with logical axes ('embed', 'vocab'), the
  same name and shape as the `nn.Dense` it replaces, so checkpoints and
  conversions are unchanged. `backward` is one of `LM_HEAD_BACKWARDS`; it
  changes how gradients are computed, not their values.
  """

  vocab_size: int
  param_dtype: DType = jnp.float32
  backward: str = "xla"

  @nn.compact
  def __call__(self, h_bte: Array) -> Array:
    if self.backward not in LM_HEAD_BACKWARDS:
      raise ValueError(f"VocabHead.backward must be one of "
                       f"{LM_HEAD_BACKWARDS}, got {self.backward!r}.")
    kernel = self.param(
        "kernel", _init(normal_init(h_bte.shape[-1] ** -0.5),
                        ("embed", "vocab")),
        (h_bte.shape[-1], self.vocab_size), self.param_dtype)
    project = (vocab_projection_cpu_barrier if self.backward == "cpu_barrier"
               else vocab_projection)
    return project(h_bte.astype(jnp.float32),
                   jnp.asarray(kernel, jnp.float32))
