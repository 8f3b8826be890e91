"""Batched autoregressive sampling for T5 with a KV cache and logit transforms.

Everything runs inside one traceable function (jit it, or call it from a
jitted train step): each model's encoder runs once, then a `lax.while_loop`
decodes one position per iteration with each model's own self-attention KV
cache, and stops early once every row has produced EOS. No host round-trips.

Per step, for the models m_1..m_M (M = 1: the policy; M = 2: policy and
reference, possibly of different sizes but with one vocabulary):

  1. lp_j = log_softmax(logits_j)              (temperature 1, [b, v])
  2. z = transform((lp_1, ..., lp_M), step)    (the logit-transform hook)
  3. z' = top_p(top_k(z / T))                  (masked entries −inf)
  4. y ~ softmax(z'); greedy (T = 0): y = argmax z
  5. record log softmax(z')[y] (sampling distribution) and lp_j[y].

Temperature and the geometric mixture: the mixture is formed from the
temperature-1 log-probs, z = (1−β)·log π_θ + β·log μ, and the temperature,
top-k and top-p then act on z. At T = 1 without truncation the sampler thus
draws exactly from the normalised one-step-at-a-time mixture π̃ of
paper.md §4.3; at T ≠ 1 from π̃^{1/T}/Z, which equals the geometric mixture
of the tempered models π_θ^{1/T}, μ^{1/T} (log-linear pooling commutes with
temperature). The order matters only for top-k / top-p: they truncate the
mixture, not each model. `policy_log_probs` / `reference_log_probs` are
always the temperature-1 log π_θ(y_n|·), log μ(y_n|·) of the sampled
tokens: the KL terms use log π_θ − log μ at temperature 1, and the policy
gradient uses log π_θ at temperature 1, recomputed with gradients by
teacher forcing in the train step (these recorded values, without
gradients, serve for the KL estimate and as a check). For on-policy
training sample at T = 1 without truncation. `sampling_log_probs` are the
log-probs under the distribution actually sampled (after mixture,
temperature and truncation; 0 when greedy), e.g. for importance weights.

β = 0 (β = 1) reproduces plain sampling of the policy (reference) bit for bit
with the same rng: the mixture returns its end points exactly and both paths
share steps 3-5.

Outputs: tokens are 0 (pad) after the first EOS (id 1), all per-token arrays
are 0 there, and `mask` (1.0 up to and including EOS) is authoritative: a
sampled pad id before EOS is kept as a real token.

Rng: step n draws Gumbel-max noise for the whole batch from
`fold_in(rng, n)`, so the result depends on (rng, batch contents, shapes)
only, not on the mesh (JAX's partitionable threefry); logits that differ by
float rounding (sharded vs unsharded, cached vs naive) flip a draw only
with probability of the order of that rounding error.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
from flax import struct
import jax
import jax.numpy as jnp

from nlhf_jax import errors
from nlhf_jax import mixtures
from nlhf_jax.models import layers
from nlhf_jax.models import t5
from nlhf_jax.tokens import EOS_ID, PAD_ID

Array = jax.Array

# transform((log_probs_bv per model), step) -> sampling logits [b, v].
LogitTransform = Callable[[tuple[Array, ...], Array], Array]


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """Compile-time sampling settings (hashable; one compilation per value).

  Attributes:
    max_decode_length: L, the number of decoding steps and output width.
    temperature: T > 0 divides the (mixed) logits; T = 0 means greedy.
    top_k: keep the k largest logits per step (ties at the k-th value are
      all kept; k ≥ vocabulary keeps all); None disables.
    top_p: nucleus sampling: keep the smallest set of most likely tokens
      (after temperature and top-k) whose mass reaches p, p ∈ (0, 1);
      None disables.
    eos_id: end-of-sequence id; None never stops early (fixed-length
      decoding, e.g. for benchmarks).
    return_logits: also return each model's raw per-step logits [b, L, v]
      (for tests and debugging; memory-heavy).
  """

  max_decode_length: int
  temperature: float = 1.0
  top_k: Optional[int] = None
  top_p: Optional[float] = None
  eos_id: Optional[int] = EOS_ID
  return_logits: bool = False

  def __post_init__(self):
    errors.check_positive(self, "max_decode_length", self.max_decode_length,
                          integer=True)
    errors.check_non_negative(self, "temperature", self.temperature,
                              hint="0 = greedy")
    check_truncation(self, self.top_k, self.top_p)
    errors.check_at_least(self, "eos_id", self.eos_id, PAD_ID + 1,
                          integer=True, also=(None,),
                          hint=f"the pad id is {PAD_ID}")


def check_truncation(owner: Any, top_k: Optional[int],
                     top_p: Optional[float]) -> None:
  """ConfigError unless top_k is None or >= 1 and top_p None or in (0, 1).

  Shared by `SamplingConfig` and the configs that build one.
  """
  errors.check_positive(owner, "top_k", top_k, integer=True, also=(None,))
  errors.check_in_range(owner, "top_p", top_p, 0.0, 1.0, low_inclusive=False,
                        high_inclusive=False, also=(None,))


class SampleOutput(struct.PyTreeNode):
  """Sampled responses; every array has the batch as its leading axis.

  Attributes:
    tokens: [b, L] int32, 0 after the first EOS.
    lengths: [b] int32, tokens up to and including EOS (L if none).
    mask: [b, L] float32, 1.0 at positions < length.
    sampling_log_probs: [b, L] log-prob of each token under the sampling
      distribution (after mixture, temperature, top-k/p); 0 when greedy.
    policy_log_probs: [b, L] temperature-1 log π_θ(y_n | x, y_<n).
    reference_log_probs: [b, L] temperature-1 log μ(y_n | x, y_<n), or None
      without a reference.
    policy_logits: [b, L, v] raw policy logits per step, or None unless
      `return_logits`; 0 after the last step executed.
    reference_logits: the same for the reference.
  """

  tokens: Array
  lengths: Array
  mask: Array
  sampling_log_probs: Array
  policy_log_probs: Array
  reference_log_probs: Optional[Array] = None
  policy_logits: Optional[Array] = None
  reference_logits: Optional[Array] = None


def identity_transform(log_probs: tuple[Array, ...], step: Array) -> Array:
  """Sampling logits = the first model's log-probs (plain sampling)."""
  del step
  return log_probs[0]


def geometric_mixture_transform(beta: Any) -> LogitTransform:
  """Transform for (policy, reference): (1−β)·log π_θ + β·log μ.

  Args:
    beta: β ∈ [0, 1]: Python number, scalar array or per-row array [b, 1];
      exact at 0 and 1.

  Returns:
    A `LogitTransform` for two models.
  """

  def transform(log_probs: tuple[Array, ...], step: Array) -> Array:
    del step
    if len(log_probs) != 2:
      raise ValueError("geometric_mixture_transform needs exactly two models "
                       f"(policy, reference), got {len(log_probs)}.")
    return mixtures.geometric_mixture_logits(log_probs[0], log_probs[1], beta)

  return transform


def filter_logits(logits_bv: Array, config: SamplingConfig) -> Array:
  """Temperature, then top-k, then top-p; removed entries become −inf.

  Args:
    logits_bv: [b, v] sampling logits z (before temperature).
    config: a config with temperature > 0.

  Returns:
    z' [b, v]: z / T with entries outside the top-k / nucleus set at −inf.
  """
  x = logits_bv / jnp.asarray(config.temperature, logits_bv.dtype)
  if config.top_k is not None and config.top_k < x.shape[-1]:
    kth = jax.lax.top_k(x, config.top_k)[0][..., -1:]
    x = jnp.where(x < kth, -jnp.inf, x)
  if config.top_p is not None:
    sorted_desc = -jnp.sort(-x, axis=-1)
    probs = jax.nn.softmax(sorted_desc, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    # The most likely token has mass_before 0 < p, so it is always kept.
    threshold = jnp.min(jnp.where(mass_before < config.top_p, sorted_desc,
                                  jnp.inf), axis=-1, keepdims=True)
    x = jnp.where(x < threshold, -jnp.inf, x)
  return x


def choose_tokens(key: Array, logits_bv: Array,
                  config: SamplingConfig) -> tuple[Array, Array]:
  """Draws one token per row from the transformed sampling logits.

  Args:
    key: PRNG key for this step.
    logits_bv: [b, v] sampling logits z (output of the transform).
    config: sampling settings.

  Returns:
    (tokens [b] int32, log-probs [b] of the tokens under softmax(z'),
    0 when greedy).
  """
  if config.temperature == 0.0:
    tokens = first_argmax(logits_bv)
    return tokens, jnp.zeros(tokens.shape, jnp.float32)
  x = filter_logits(logits_bv, config)
  # Gumbel-max: argmax(z' + g). It costs b·v random numbers per step
  # (~35 ms at batch 32 × vocab 32k on one CPU core; negligible on
  # accelerators) but a float perturbation δ of the logits only flips a
  # draw with probability ~δ, whereas inverse-CDF sampling (b numbers) flips
  # with probability ~δ/p_token, which made cached and naive decoding of T5
  # small (near-uniform random weights) disagree on 31% of tokens.
  # The draws of jax.random.categorical(key, x), with its argmax replaced.
  tokens = first_argmax(jax.random.gumbel(key, x.shape, x.dtype) + x)
  log_probs = jax.nn.log_softmax(x, axis=-1)
  return tokens, _gather(log_probs, tokens)


def first_argmax(x_bv: Array) -> Array:
  """jnp.argmax(x, -1) (first maximal index, int32 [b]) as two reductions.

  A max, then the smallest index that attains it. XLA:CPU lowers
  jnp.argmax's (value, index) reduction to a scalar loop: 5 ms per decoding
  step for [16, 32128] on the 2-core development machine, a quarter of the
  Nash-MD-PG benchmark's sampling time, against well under 1 ms for the
  two plain reductions. Rows holding NaN give the last index instead of
  the NaN's.
  """
  vocab = x_bv.shape[-1]
  peak = jnp.max(x_bv, axis=-1, keepdims=True)
  index = jax.lax.broadcasted_iota(jnp.int32, x_bv.shape, x_bv.ndim - 1)
  first = jnp.min(jnp.where(x_bv == peak, index, vocab), axis=-1)
  return jnp.minimum(first, vocab - 1)


def _gather(values_bv: Array, tokens_b: Array) -> Array:
  return jnp.take_along_axis(values_bv, tokens_b[:, None], axis=-1)[:, 0]


def _write(buf: Array, step: Array, column: Array) -> Array:
  """buf[:, step] = column (buf [b, L, ...], column [b, ...])."""
  return jax.lax.dynamic_update_slice_in_dim(buf, column[:, None], step,
                                             axis=1)


def _constrain_cache(cache: Any) -> Any:
  """Keeps KV caches batch-sharded (no-op outside a mesh).

  Unrolled stacks hold [b, h, L, d] (self-attention) and [b, h, t, d]
  (cross-attention) per layer, `scan_layers` stacks a leading layer axis.
  """
  names = ("cached_key", "cached_value", "cross_key", "cross_value")

  def one(path, x):
    if getattr(path[-1], "key", None) not in names or x.ndim < 4:
      return x
    return nn.with_logical_constraint(
        x, (None,) * (x.ndim - 4) + layers.ACT_BHTD)

  return jax.tree_util.tree_map_with_path(one, cache)


class _Carry(NamedTuple):
  """State of the decoding loop (L = max_decode_length, M = #models)."""
  step: Array                     # scalar int32
  done: Array                     # [b] bool, EOS already emitted
  prev: Array                     # [b] int32, decoder input of this step
  lengths: Array                  # [b] int32
  tokens: Array                   # [b, L] int32
  sampling_log_probs: Array       # [b, L]
  model_log_probs: tuple          # M x [b, L]
  model_logits: tuple             # M x [b, L, v], or () without logits
  caches: tuple                   # M x cache collection (None if naive)


class _Decoder(NamedTuple):
  """One model bound to its parameters and its encoded prompt."""
  model: nn.Module
  params: Any
  encoded: Array                  # [b, t, e]


def _model_logits(dec: _Decoder, enc_tokens: Array, carry: _Carry,
                  cache: Any, max_len: int) -> tuple[Array, Any]:
  """Logits [b, v] of one model at `carry.step`, and its updated cache.

  With a cache: one cached decoder step on `carry.prev`. Without (naive):
  the full decoder over shift_right(tokens) [b, L], read at `carry.step`.
  """
  variables = {"params": dec.params}
  if cache is not None:
    logits, mutated = dec.model.apply(
        {**variables, "cache": cache}, dec.encoded, enc_tokens,
        carry.prev[:, None], decode=True, max_decode_length=max_len,
        method="decode", mutable=["cache"])
    return logits[:, 0], _constrain_cache(mutated["cache"])
  logits = dec.model.apply(variables, dec.encoded, enc_tokens,
                           t5.shift_right(carry.tokens), method="decode")
  return jax.lax.dynamic_index_in_dim(logits, carry.step, axis=1,
                                      keepdims=False), None


def _loop_body(decoders: tuple[_Decoder, ...], enc_tokens: Array, rng: Array,
               config: SamplingConfig, transform: LogitTransform):
  """The while-loop body: one decoding step for the whole batch."""
  max_len = config.max_decode_length

  def body(carry: _Carry) -> _Carry:
    outs = [_model_logits(d, enc_tokens, carry, c, max_len)
            for d, c in zip(decoders, carry.caches)]
    log_probs = tuple(jax.nn.log_softmax(l, axis=-1) for l, _ in outs)
    z = transform(log_probs, carry.step)
    if z.shape != log_probs[0].shape:
      raise ValueError(f"The logit transform returned shape {z.shape}; "
                       f"expected {log_probs[0].shape} ([batch, vocab]).")
    key = jax.random.fold_in(rng, carry.step)
    token, sample_lp = choose_tokens(key, z, config)
    live = ~carry.done
    token = jnp.where(live, token, PAD_ID)

    def put(buf, column):
      return _write(buf, carry.step, jnp.where(
          live.reshape(live.shape + (1,) * (column.ndim - 1)), column, 0))

    finished = (live & (token == config.eos_id) if config.eos_id is not None
                else jnp.zeros_like(live))
    return _Carry(
        step=carry.step + 1,
        done=carry.done | finished,
        prev=token,
        lengths=jnp.where(finished, carry.step + 1, carry.lengths),
        tokens=put(carry.tokens, token),
        sampling_log_probs=put(carry.sampling_log_probs, sample_lp),
        model_log_probs=tuple(put(buf, _gather(lp, token)) for buf, lp in
                              zip(carry.model_log_probs, log_probs)),
        model_logits=tuple(_write(buf, carry.step, l) for buf, (l, _) in
                           zip(carry.model_logits, outs)),
        caches=tuple(c for _, c in outs))

  return body


def _check_inputs(models: Sequence[nn.Module], params: Sequence[Any],
                  encoder_input_tokens: Array) -> None:
  if len(models) not in (1, 2) or len(params) != len(models):
    raise ValueError("sampling needs one or two models (policy[, reference]) "
                     f"with as many parameter sets; got {len(models)} models "
                     f"and {len(params)} parameter sets.")
  vocabs = [m.config.vocab_size for m in models]
  if len(set(vocabs)) != 1:
    raise ValueError(f"Policy and reference must share a vocabulary; got "
                     f"vocab sizes {vocabs}.")
  if encoder_input_tokens.ndim != 2 or not jnp.issubdtype(
      encoder_input_tokens.dtype, jnp.integer):
    raise ValueError("encoder_input_tokens must be an integer array [batch, "
                     f"length], got {encoder_input_tokens.dtype}"
                     f"{list(encoder_input_tokens.shape)}.")


def _initial_carry(decoders: tuple[_Decoder, ...], enc_tokens: Array,
                   config: SamplingConfig, use_kv_cache: bool) -> _Carry:
  b = enc_tokens.shape[0]
  max_len = config.max_decode_length
  vocab = decoders[0].model.config.vocab_size

  def zeros(*shape, dtype=jnp.float32):
    axes = ("act_batch", "act_length", "act_vocab")[:len(shape)]
    return nn.with_logical_constraint(jnp.zeros(shape, dtype), axes)

  caches = tuple(
      _constrain_cache(t5.init_decode_cache(d.model, d.params, d.encoded,
                                            enc_tokens, max_len))
      if use_kv_cache else None for d in decoders)
  return _Carry(
      step=jnp.zeros((), jnp.int32), done=jnp.zeros((b,), bool),
      prev=jnp.full((b,), PAD_ID, jnp.int32),
      lengths=jnp.full((b,), max_len, jnp.int32),
      tokens=zeros(b, max_len, dtype=jnp.int32),
      sampling_log_probs=zeros(b, max_len),
      model_log_probs=tuple(zeros(b, max_len) for _ in decoders),
      model_logits=tuple(zeros(b, max_len, vocab) for _ in decoders)
      if config.return_logits else (),
      caches=caches)


def _encode_copies(model: nn.Module, params: Any, prompts_bt: Array,
                   copies: int) -> Array:
  """Encoder output [copies · b, t, e] of [x; x; …], x encoded once."""
  encoded = model.apply({"params": params}, prompts_bt, method="encode")
  if copies == 1:
    return encoded
  return layers.constrain(jnp.concatenate([encoded] * copies),
                          layers.ACT_BTE)


def sample_with_transform(models: Sequence[nn.Module],
                          params: Sequence[Any], encoder_input_tokens: Array,
                          rng: Array, config: SamplingConfig,
                          transform: LogitTransform, *,
                          use_kv_cache: bool = True,
                          copies: int = 1) -> SampleOutput:
  """Samples responses with a per-step logit transform over 1-2 models.

  Args:
    models: (policy,) or (policy, reference) `T5` modules (configs may
      differ, vocabularies must match).
    params: their parameter trees (sharded or not).
    encoder_input_tokens: prompts [b, t] int, pad 0.
    rng: PRNG key.
    config: static sampling settings.
    transform: maps the models' temperature-1 log-probs (each [b, v]) and
      the step index to the sampling logits z [b, v].
    use_kv_cache: False selects the naive reference decoder that reruns the
      full decoder over the whole token buffer every step (same sampling
      arithmetic; for tests and benchmarks).
    copies: decode every prompt this many times: the decoding batch is
      [x; x; …] (copies · b rows, the layout of
      `jnp.concatenate([x] * copies)`, whose samples these are), but each
      model encodes the b prompts once. The encoder is most of a small
      model's sampling time: at the demo's size (T5 with d_model 32, prompts
      of 192 tokens) it took 38 ms for 64 rows against 11 ms for 32.

  Returns:
    `SampleOutput` with copies · b rows; `reference_*` fields are None with
    a single model.
  """
  _check_inputs(models, params, encoder_input_tokens)
  if not isinstance(copies, int) or copies < 1:
    raise ValueError(f"copies must be a positive int, got {copies!r}.")
  prompts = encoder_input_tokens.astype(jnp.int32)
  enc_tokens = jnp.concatenate([prompts] * copies) if copies > 1 else prompts
  decoders = tuple(
      _Decoder(m, p, _encode_copies(m, p, prompts, copies))
      for m, p in zip(models, params))
  carry = _initial_carry(decoders, enc_tokens, config, use_kv_cache)
  body = _loop_body(decoders, enc_tokens, rng, config, transform)
  carry = jax.lax.while_loop(
      lambda c: (c.step < config.max_decode_length) & ~jnp.all(c.done),
      body, carry)
  positions = jnp.arange(config.max_decode_length, dtype=jnp.int32)
  mask = (positions[None, :] < carry.lengths[:, None]).astype(jnp.float32)
  logits = carry.model_logits or (None, None)
  return SampleOutput(
      tokens=carry.tokens, lengths=carry.lengths, mask=mask,
      sampling_log_probs=carry.sampling_log_probs,
      policy_log_probs=carry.model_log_probs[0],
      reference_log_probs=(carry.model_log_probs[1] if len(models) == 2
                           else None),
      policy_logits=logits[0],
      reference_logits=logits[1] if len(logits) == 2 else None)


def sample(model: nn.Module, params: Any, encoder_input_tokens: Array,
           rng: Array, config: SamplingConfig, *,
           use_kv_cache: bool = True) -> SampleOutput:
  """Samples y ~ π_θ(· | x) (with temperature / top-k / top-p).

  Args:
    model: the policy `T5` module.
    params: its parameters.
    encoder_input_tokens: prompts [b, t] int, pad 0.
    rng: PRNG key.
    config: static sampling settings.
    use_kv_cache: False for the naive recompute-everything decoder.

  Returns:
    `SampleOutput` with `reference_log_probs=None`.
  """
  return sample_with_transform((model,), (params,), encoder_input_tokens,
                               rng, config, identity_transform,
                               use_kv_cache=use_kv_cache)


def sample_mixture(policy_model: nn.Module, policy_params: Any,
                   reference_model: nn.Module, reference_params: Any,
                   encoder_input_tokens: Array, rng: Array, beta: Any,
                   config: SamplingConfig, *,
                   use_kv_cache: bool = True,
                   copies: int = 1) -> SampleOutput:
  """Samples from the one-step-at-a-time mixture π_θ^{1−β} μ^β / C.

  Next-token logits z = (1−β)·log π_θ + β·log μ (temperature-1 log-probs),
  then temperature / top-k / top-p as in `sample`. β = 0 gives the same
  tokens as `sample(policy)`, β = 1 as `sample(reference)` (same rng).

  Args:
    policy_model: policy `T5` module.
    policy_params: its parameters.
    reference_model: reference `T5` module (same vocabulary).
    reference_params: its parameters.
    encoder_input_tokens: prompts [b, t] int, pad 0.
    rng: PRNG key.
    beta: β ∈ [0, 1]: a Python number, a scalar array or one β per row
      [b, 1] (e.g. 0 for rows sampled from the policy, β for the opponent's
      rows of the same batch). Arrays are runtime values: no recompilation
      across values.
    config: static sampling settings.
    use_kv_cache: False for the naive recompute-everything decoder.
    copies: decode [x; x; …] (`copies` times the prompts), encoding x once
      (see `sample_with_transform`); a per-row β then has copies · b rows.

  Returns:
    `SampleOutput` with policy and reference log-probs of the tokens.
  """
  return sample_with_transform(
      (policy_model, reference_model), (policy_params, reference_params),
      encoder_input_tokens, rng, config, geometric_mixture_transform(beta),
      use_kv_cache=use_kv_cache, copies=copies)
