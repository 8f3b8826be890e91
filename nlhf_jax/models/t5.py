"""T5 1.1 encoder-decoder (Flax linen) with an LM head and a scalar head.

The architecture follows T5 1.1: pre-norm RMSNorm without mean subtraction,
gated-GELU feed-forward, relative-position buckets computed once per stack and
shared by its layers, no biases, an input embedding shared by encoder and
decoder, an untied output projection, dropout on embeddings, sub-layer outputs
and attention weights.

Conventions: pad id 0 (also the decoder start token), EOS id 1. Decoder inputs
are the targets shifted right by one with a leading 0.

`T5` is the policy/reference network (logits over the vocabulary); `T5Scorer`
reads the encoder input and one decoder step and returns a scalar, the shape
needed by the reward model r(x, y) and the preference model's logit for
P(y ≻ y' | x).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from nlhf_jax import errors
from nlhf_jax.models import layers

Array = jax.Array

REMAT_POLICIES = ("none", "full", "dots")
# The usual activation and parameter dtypes (any floating dtype is valid).
DTYPES = ("float32", "bfloat16", "float16")
LM_HEAD_BACKWARDS = layers.LM_HEAD_BACKWARDS
POSITION_BIAS_BACKWARDS = layers.POSITION_BIAS_BACKWARDS


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Dimensions and numerics of a T5 1.1 model (see gin_configs/models/).

  `remat_policy` sets activation checkpointing per layer ('none', 'full',
  'dots'). `scan_layers` runs each stack as one `nn.scan` over stacked layer
  parameters (leading `layers` axis): compile time no longer grows with
  depth, which matters for XL/XXL and ahead-of-time compilation; the
  parameter tree then differs from the unrolled one (`layers/layer/...`
  instead of `layers_0/...`), so pretrained imports need the unrolled form.
  `lm_head_backward` picks how the LM head's gradient is computed (same
  values): 'xla' (autodiff, portable, the default) or 'cpu_barrier' (a
  hand-written backward tuned for XLA:CPU, bound by
  gin_configs/backends/cpu.gin; see docs/cpu_speedups.md).
  `position_bias_backward` likewise picks how the encoder's relative-position
  bias gradient is summed over the batch: 'xla' (portable, the default) or
  'batch_dot' (a dot with ones, faster on XLA:CPU; cpu.gin).
  """

  vocab_size: int = 32128
  d_model: int = 512
  num_heads: int = 6
  d_kv: int = 64
  d_ff: int = 1024
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  dropout_rate: float = 0.0
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat_policy: str = "none"
  scan_layers: bool = False
  lm_head_backward: str = "xla"
  position_bias_backward: str = "xla"

  def __post_init__(self):
    for name in ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff",
                 "num_encoder_layers", "num_decoder_layers",
                 "relative_attention_num_buckets",
                 "relative_attention_max_distance"):
      errors.check_positive(self, name, getattr(self, name), integer=True)
    errors.check_in_range(self, "dropout_rate", self.dropout_rate, 0.0, 1.0,
                          high_inclusive=False)
    errors.check_positive(self, "layer_norm_epsilon", self.layer_norm_epsilon)
    errors.check_choice(self, "remat_policy", self.remat_policy,
                        REMAT_POLICIES)
    errors.check_choice(self, "lm_head_backward", self.lm_head_backward,
                        LM_HEAD_BACKWARDS)
    errors.check_choice(self, "position_bias_backward",
                        self.position_bias_backward, POSITION_BIAS_BACKWARDS)
    for name in ("dtype", "param_dtype"):
      value = getattr(self, name)
      try:
        floating = jnp.issubdtype(jnp.dtype(value), jnp.floating)
      except TypeError:
        floating = False
      if not floating:
        raise errors.ConfigError(f"T5Config.{name} must be a floating-point "
                                 f"dtype such as {DTYPES}, got {value!r}.")

  @property
  def jnp_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def jnp_param_dtype(self):
    return jnp.dtype(self.param_dtype)


def _remat(cls, policy: str, static_argnums: tuple[int, ...]):
  """Activation checkpointing of a layer class (`self` is argument 0)."""
  if policy == "none":
    return cls
  checkpoint_policy = (None if policy == "full" else
                       jax.checkpoint_policies.checkpoint_dots)
  return nn.remat(cls, policy=checkpoint_policy,
                  static_argnums=static_argnums, prevent_cse=True)


class EncoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x: Array, bias: Array, enable_dropout: bool) -> Array:
    cfg = self.config
    kw = dict(dtype=cfg.jnp_dtype, param_dtype=cfg.jnp_param_dtype)
    drop = nn.Dropout(cfg.dropout_rate, deterministic=not enable_dropout)
    h = layers.RMSNorm(cfg.layer_norm_epsilon, name="pre_attention_norm",
                       **kw)(x)
    h = layers.MultiHeadAttention(
        cfg.num_heads, cfg.d_kv, cfg.dropout_rate, name="attention", **kw)(
            h, h, bias, enable_dropout=enable_dropout)
    x = x + drop(h)
    h = layers.RMSNorm(cfg.layer_norm_epsilon, name="pre_mlp_norm", **kw)(x)
    h = layers.GatedGeluMlp(cfg.d_ff, cfg.dropout_rate, name="mlp", **kw)(
        h, enable_dropout=enable_dropout)
    return layers.constrain(x + drop(h), layers.ACT_BTE)


class DecoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x: Array, encoded: Array, self_bias: Array,
               cross_bias: Array, enable_dropout: bool, decode: bool) -> Array:
    cfg = self.config
    kw = dict(dtype=cfg.jnp_dtype, param_dtype=cfg.jnp_param_dtype)
    drop = nn.Dropout(cfg.dropout_rate, deterministic=not enable_dropout)
    h = layers.RMSNorm(cfg.layer_norm_epsilon,
                       name="pre_self_attention_norm", **kw)(x)
    h = layers.MultiHeadAttention(
        cfg.num_heads, cfg.d_kv, cfg.dropout_rate, name="self_attention",
        **kw)(h, h, self_bias, decode=decode, enable_dropout=enable_dropout)
    x = x + drop(h)
    h = layers.RMSNorm(cfg.layer_norm_epsilon,
                       name="pre_cross_attention_norm", **kw)(x)
    h = layers.MultiHeadAttention(
        cfg.num_heads, cfg.d_kv, cfg.dropout_rate,
        name="encoder_decoder_attention", **kw)(
            h, encoded, cross_bias, decode=decode, static_kv=True,
            enable_dropout=enable_dropout)
    x = x + drop(h)
    h = layers.RMSNorm(cfg.layer_norm_epsilon, name="pre_mlp_norm", **kw)(x)
    h = layers.GatedGeluMlp(cfg.d_ff, cfg.dropout_rate, name="mlp", **kw)(
        h, enable_dropout=enable_dropout)
    return layers.constrain(x + drop(h), layers.ACT_BTE)


class _ScanEncoderLayer(nn.Module):
  """Encoder layer in `nn.scan` form: (carry, broadcast args) -> (carry, _)."""

  config: T5Config
  enable_dropout: bool

  @nn.compact
  def __call__(self, x: Array, bias: Array):
    return EncoderLayer(self.config, name="layer")(x, bias,
                                                   self.enable_dropout), None


class _ScanDecoderLayer(nn.Module):
  """Decoder layer in `nn.scan` form."""

  config: T5Config
  enable_dropout: bool
  decode: bool

  @nn.compact
  def __call__(self, x: Array, encoded: Array, self_bias: Array,
               cross_bias: Array):
    return DecoderLayer(self.config, name="layer")(
        x, encoded, self_bias, cross_bias, self.enable_dropout,
        self.decode), None


def _scan_stack(layer_cls, cfg: T5Config, num_layers: int, num_args: int,
                collections: tuple[str, ...]):
  """nn.scan over `num_layers` copies with stacked variables (axis 0)."""
  cls = layer_cls
  if cfg.remat_policy != "none":
    policy = (None if cfg.remat_policy == "full" else
              jax.checkpoint_policies.checkpoint_dots)
    cls = nn.remat(layer_cls, policy=policy, prevent_cse=False)
  return nn.scan(
      cls, variable_axes={c: 0 for c in collections},
      split_rngs={"params": True, "dropout": True},
      in_axes=(nn.broadcast,) * num_args, length=num_layers,
      metadata_params={nn.PARTITION_NAME: "layers"})


def _mask_to_bias(mask: Array) -> Array:
  """Boolean attention mask [b, 1|h, q, k] -> additive float32 bias."""
  return jnp.where(mask, 0.0, -1e10).astype(jnp.float32)


class Encoder(nn.Module):
  config: T5Config
  embedder: nn.Module

  @nn.compact
  def __call__(self, tokens_bt: Array, enable_dropout: bool) -> Array:
    cfg = self.config
    x = self.embedder(tokens_bt.astype(jnp.int32))
    x = nn.Dropout(cfg.dropout_rate, deterministic=not enable_dropout)(x)
    x = layers.constrain(x.astype(cfg.jnp_dtype), layers.ACT_BTE)
    length = tokens_bt.shape[1]
    pos_bias = layers.RelativePositionBias(
        cfg.relative_attention_num_buckets,
        cfg.relative_attention_max_distance, cfg.num_heads,
        bidirectional=True, dtype=cfg.jnp_dtype,
        param_dtype=cfg.jnp_param_dtype, name="relpos_bias")(
            jnp.arange(length), length)
    key_mask = (tokens_bt > 0)[:, None, None, :]
    add_bias = (layers.add_row_bias_batch_dot
                if cfg.position_bias_backward == "batch_dot"
                else layers.add_row_bias)
    bias = add_bias(pos_bias, _mask_to_bias(key_mask))
    if cfg.scan_layers:
      stack = _scan_stack(_ScanEncoderLayer, cfg, cfg.num_encoder_layers, 1,
                          ("params",))
      x, _ = stack(cfg, enable_dropout, name="layers")(x, bias)
    else:
      layer_cls = _remat(EncoderLayer, cfg.remat_policy, (3,))
      for i in range(cfg.num_encoder_layers):
        x = layer_cls(cfg, name=f"layers_{i}")(x, bias, enable_dropout)
    x = layers.RMSNorm(cfg.layer_norm_epsilon, dtype=cfg.jnp_dtype,
                       param_dtype=cfg.jnp_param_dtype, name="encoder_norm")(x)
    return nn.Dropout(cfg.dropout_rate, deterministic=not enable_dropout)(x)


class Decoder(nn.Module):
  """Decoder stack returning final hidden states [b, q, e].

  Full mode: causal self-attention over `tokens_bq`. Cached mode
  (`decode=True`): `tokens_bq` is one position [b, 1] at `positions_b`
  (the same for the whole batch); keys beyond it are masked.
  """

  config: T5Config
  embedder: nn.Module

  @nn.compact
  def __call__(self, encoded: Array, encoder_tokens_bt: Array,
               tokens_bq: Array, enable_dropout: bool, decode: bool,
               max_decode_length: Optional[int]) -> Array:
    cfg = self.config
    x = self.embedder(tokens_bq.astype(jnp.int32))
    x = nn.Dropout(cfg.dropout_rate, deterministic=not enable_dropout)(x)
    x = layers.constrain(x.astype(cfg.jnp_dtype), layers.ACT_BTE)
    relpos = layers.RelativePositionBias(
        cfg.relative_attention_num_buckets,
        cfg.relative_attention_max_distance, cfg.num_heads,
        bidirectional=False, dtype=cfg.jnp_dtype,
        param_dtype=cfg.jnp_param_dtype, name="relpos_bias")
    if decode:
      initialized = self.has_variable("cache", "decode_step")
      step = self.variable("cache", "decode_step",
                           lambda: jnp.array(0, dtype=jnp.int32))
      key_length = max_decode_length
      query_pos = step.value[None]
      if initialized:
        step.value = step.value + 1
      self_mask = (jnp.arange(key_length)[None, :] <= query_pos[:, None])
    else:
      key_length = tokens_bq.shape[1]
      query_pos = jnp.arange(key_length)
      self_mask = query_pos[None, :] <= query_pos[:, None]
    self_bias = relpos(query_pos, key_length) + _mask_to_bias(
        self_mask[None, None])
    cross_bias = _mask_to_bias((encoder_tokens_bt > 0)[:, None, None, :])
    if cfg.scan_layers:
      stack = _scan_stack(_ScanDecoderLayer, cfg, cfg.num_decoder_layers, 3,
                          ("params", "cache"))
      x, _ = stack(cfg, enable_dropout, decode, name="layers")(
          x, encoded, self_bias, cross_bias)
    else:
      layer_cls = _remat(DecoderLayer, cfg.remat_policy, (5, 6))
      for i in range(cfg.num_decoder_layers):
        x = layer_cls(cfg, name=f"layers_{i}")(
            x, encoded, self_bias, cross_bias, enable_dropout, decode)
    x = layers.RMSNorm(cfg.layer_norm_epsilon, dtype=cfg.jnp_dtype,
                       param_dtype=cfg.jnp_param_dtype, name="decoder_norm")(x)
    return nn.Dropout(cfg.dropout_rate, deterministic=not enable_dropout)(x)


class _Backbone(nn.Module):
  """Shared embedder + encoder + decoder used by both heads."""

  config: T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = nn.Embed(
        cfg.vocab_size, cfg.d_model, dtype=cfg.jnp_dtype,
        param_dtype=cfg.jnp_param_dtype,
        embedding_init=nn.with_logical_partitioning(
            nn.initializers.normal(1.0), ("vocab", "embed")))
    self.encoder = Encoder(cfg, self.token_embedder)
    self.decoder = Decoder(cfg, self.token_embedder)


class T5(_Backbone):
  """T5 1.1 with an untied LM head: logits [b, q, v]."""

  def setup(self):
    super().setup()
    cfg = self.config
    self.logits_dense = layers.VocabHead(
        cfg.vocab_size, param_dtype=cfg.jnp_param_dtype,
        backward=cfg.lm_head_backward)

  def encode(self, encoder_input_tokens: Array, *,
             enable_dropout: bool = False) -> Array:
    """Encoder hidden states [b, t, e]; pad tokens (0) are masked."""
    return self.encoder(encoder_input_tokens, enable_dropout)

  def decode(self, encoded: Array, encoder_input_tokens: Array,
             decoder_input_tokens: Array, *, enable_dropout: bool = False,
             decode: bool = False,
             max_decode_length: Optional[int] = None) -> Array:
    """Logits [b, q, v] (float32) for decoder inputs [b, q].

    Args:
      encoded: encoder output [b, t, e].
      encoder_input_tokens: [b, t], used for the cross-attention mask.
      decoder_input_tokens: [b, q] (q = 1 when `decode`).
      enable_dropout: apply dropout (training).
      decode: use and update the KV cache in the `cache` collection.
      max_decode_length: cache length; required when `decode`.
    """
    if decode and max_decode_length is None:
      raise ValueError("max_decode_length is required when decode=True.")
    h = self.decoder(encoded, encoder_input_tokens, decoder_input_tokens,
                     enable_dropout, decode, max_decode_length)
    logits = self.logits_dense(h)
    return layers.constrain(logits, layers.ACT_BTV)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               *, enable_dropout: bool = False) -> Array:
    """Teacher-forced logits [b, q, v]."""
    encoded = self.encode(encoder_input_tokens, enable_dropout=enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       enable_dropout=enable_dropout)


class T5Scorer(_Backbone):
  """T5 1.1 backbone with a scalar head: one score per encoder input [b].

  The encoder reads the whole text (for a reward model: prompt + summary;
  for a preference model: prompt + both summaries); the decoder runs one step
  from the start token and the head maps its final hidden state to a scalar,
  like reading the logit of a single output token.
  """

  def setup(self):
    super().setup()
    cfg = self.config
    self.score_head = nn.Dense(
        1, use_bias=True, dtype=jnp.float32, param_dtype=cfg.jnp_param_dtype,
        kernel_init=nn.with_logical_partitioning(
            layers.normal_init(cfg.d_model ** -0.5), ("embed", "score")),
        bias_init=nn.with_logical_partitioning(
            nn.initializers.zeros, ("score",)))

  def __call__(self, encoder_input_tokens: Array, *,
               enable_dropout: bool = False) -> Array:
    encoded = self.encoder(encoder_input_tokens, enable_dropout)
    start = jnp.zeros((encoder_input_tokens.shape[0], 1), jnp.int32)
    h = self.decoder(encoded, encoder_input_tokens, start, enable_dropout,
                     False, None)
    return self.score_head(h[:, 0].astype(jnp.float32))[:, 0]


def init_decode_cache(model: T5, params, encoded: Array,
                      encoder_input_tokens: Array, max_decode_length: int):
  """The cache of `T5.decode(..., decode=True)` for one encoded batch.

  Args:
    model: the T5 module.
    params: its parameters.
    encoded: the encoder output [b, t, e] of the prompts being decoded.
    encoder_input_tokens: those prompts [b, t].
    max_decode_length: L, the decoding steps the cache holds.

  Returns:
    The `cache` collection: per decoder layer the self-attention's
    `cached_key`, `cached_value` [b, h, L, d] and `cache_index` (zero), the
    cross-attention's `cross_key`, `cross_value` [b, h, t, d] (the encoder
    output projected once), and the decoder's `decode_step` (zero). The
    decoder pass that creates them is discarded: under jit only the
    projections are computed.
  """
  dec_tokens = jnp.zeros((encoded.shape[0], max_decode_length), jnp.int32)
  _, variables = model.apply(
      {"params": params}, encoded, encoder_input_tokens, dec_tokens,
      decode=True, max_decode_length=max_decode_length, method=T5.decode,
      mutable=["cache"])
  return variables["cache"]


def shift_right(targets_bt: Array) -> Array:
  """Decoder inputs from targets: prepend the start token 0, drop the last."""
  return jnp.pad(targets_bt, ((0, 0), (1, 0)))[:, :-1]
