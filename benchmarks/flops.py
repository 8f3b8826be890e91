"""Analytic model FLOPs of the T5 1.1 encoder-decoder (for MFU).

Only matrix multiplications are counted, at 2 FLOPs per multiply-add;
embedding look-ups, norms, softmax, GELU and the optimizer are not (the
usual "model FLOPs" convention, so MFU is comparable across
implementations). Attention scores and the weighted sum over values are
counted over the full key range, causal masking included (that is what is
computed). Notation: e = d_model, a = num_heads · d_kv, f = d_ff,
V = vocab, t = encoder length, q = decoder length, L_e / L_d layers.

Forward FLOPs per example:

  encoder  = L_e · [ 8·t·e·a  (Q, K, V, O)  + 4·t²·a  (scores, values)
                     + 6·t·e·f  (wi_0, wi_1, wo) ]
  decoder  = L_d · [ 8·q·e·a  (self Q, K, V, O) + 4·q²·a
                     + 4·q·e·a (cross Q, O) + 4·t·e·a (cross K, V)
                     + 4·q·t·a (cross scores, values) + 6·q·e·f ]
  LM head  = 2·q·e·V                      (T5)
  score    = 2·e, decoder with q = 1      (T5Scorer)

A training step costs 3 × forward (the backward pass is two matmuls per
forward matmul: gradients of inputs and of weights).
"""

from __future__ import annotations

from nlhf_jax.models import t5

TRAIN_MULTIPLIER = 3


def encoder_forward_flops(config: t5.T5Config, enc_len: int) -> float:
  """Forward matmul FLOPs of the encoder for one example of length t."""
  e, f = config.d_model, config.d_ff
  a = config.num_heads * config.d_kv
  t = enc_len
  per_layer = 8 * t * e * a + 4 * t * t * a + 6 * t * e * f
  return float(config.num_encoder_layers * per_layer)


def decoder_forward_flops(config: t5.T5Config, enc_len: int,
                          dec_len: int) -> float:
  """Forward matmul FLOPs of the decoder stack (no head), one example."""
  e, f = config.d_model, config.d_ff
  a = config.num_heads * config.d_kv
  t, q = enc_len, dec_len
  per_layer = (8 * q * e * a + 4 * q * q * a + 4 * q * e * a + 4 * t * e * a
               + 4 * q * t * a + 6 * q * e * f)
  return float(config.num_decoder_layers * per_layer)


def lm_forward_flops(config: t5.T5Config, enc_len: int,
                     dec_len: int) -> float:
  """Teacher-forced forward FLOPs of `T5` (logits over the vocabulary)."""
  head = 2 * dec_len * config.d_model * config.vocab_size
  return (encoder_forward_flops(config, enc_len) +
          decoder_forward_flops(config, enc_len, dec_len) + head)


def scorer_forward_flops(config: t5.T5Config, enc_len: int) -> float:
  """Forward FLOPs of `T5Scorer` (one decoder step and a scalar head)."""
  return (encoder_forward_flops(config, enc_len) +
          decoder_forward_flops(config, enc_len, 1) + 2 * config.d_model)


def lm_train_flops(config: t5.T5Config, batch: int, enc_len: int,
                   dec_len: int) -> float:
  """Model FLOPs of one teacher-forced training step of `T5` on a batch."""
  return TRAIN_MULTIPLIER * batch * lm_forward_flops(config, enc_len, dec_len)


def scorer_train_flops(config: t5.T5Config, batch: int,
                       enc_len: int) -> float:
  """Model FLOPs of one training step of `T5Scorer` on a batch."""
  return TRAIN_MULTIPLIER * batch * scorer_forward_flops(config, enc_len)


def decode_flops_per_token(config: t5.T5Config) -> float:
  """Matmul FLOPs of one cached decoding step of `T5`, per sequence.

  L_d · (8·e·a (self Q, K, V, O) + 4·e·a (cross Q, O) + 6·e·f) + 2·e·V;
  attention scores over the cache and the cross-attention K/V (computed
  once per prompt) are left out, as in `gpt2_decode_flops_per_token`.
  """
  e, f = config.d_model, config.d_ff
  a = config.num_heads * config.d_kv
  per_layer = 12 * e * a + 6 * e * f
  return float(config.num_decoder_layers * per_layer +
               2 * e * config.vocab_size)


def gpt2_decode_flops_per_token(d_model: int, layers: int,
                                vocab: int) -> float:
  """The same count for a GPT-2 decoder (the TRL peer's policy).

  layers · (8·d² (Q, K, V, O) + 16·d² (MLP of width 4d)) + 2·d·V.
  """
  return float(layers * 24 * d_model ** 2 + 2 * d_model * vocab)

