"""Name and layout mapping between Hugging Face T5 1.1 weights and ours.

Hugging Face `T5ForConditionalGeneration` (v1.1: gated-gelu, no output scaling)
stores PyTorch `Linear` weights as [out, in]; ours are Flax kernels [in, ...]
with heads split out. This module is pure NumPy (no torch import): it maps a
flat `{name: array}` state dict, as read from `model.safetensors`, onto our
parameter tree, and a `config.json` dict onto `T5Config`.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from nlhf_jax.models.t5 import T5Config

Params = dict[str, Any]


def config_from_hf(hf_config: Mapping[str, Any], **overrides) -> T5Config:
  """Builds a `T5Config` from a Hugging Face T5 `config.json` dict.

  Raises:
    ValueError: if the checkpoint is not a T5 1.1-style model (gated GELU
      feed-forward and untied output embeddings), which this module needs.
  """
  proj = hf_config.get("feed_forward_proj", "relu")
  if proj not in ("gated-gelu", "gated-gelu_new"):
    raise ValueError(
        f"config.json has feed_forward_proj={proj!r}; only T5 1.1 "
        "('gated-gelu') checkpoints are supported.")
  # T5 1.1 does not rescale decoder outputs before the head. Older configs
  # say so with tie_word_embeddings=false; transformers>=5 always ties and
  # writes scale_decoder_outputs=false instead.
  scaled = hf_config.get("scale_decoder_outputs",
                         hf_config.get("tie_word_embeddings", True))
  if scaled:
    raise ValueError(
        "config.json describes an original-T5 checkpoint (decoder outputs "
        "scaled before a tied head: tie_word_embeddings=true or "
        "scale_decoder_outputs=true); only T5 1.1 checkpoints are supported.")
  num_layers = hf_config["num_layers"]
  kwargs = dict(
      vocab_size=hf_config["vocab_size"], d_model=hf_config["d_model"],
      num_heads=hf_config["num_heads"], d_kv=hf_config["d_kv"],
      d_ff=hf_config["d_ff"], num_encoder_layers=num_layers,
      num_decoder_layers=hf_config.get("num_decoder_layers") or num_layers,
      dropout_rate=hf_config.get("dropout_rate", 0.0),
      relative_attention_num_buckets=hf_config.get(
          "relative_attention_num_buckets", 32),
      relative_attention_max_distance=hf_config.get(
          "relative_attention_max_distance", 128),
      layer_norm_epsilon=hf_config.get("layer_norm_epsilon", 1e-6))
  kwargs.update(overrides)
  return T5Config(**kwargs)


class _Reader:
  """Takes tensors out of a state dict by name, recording what was used."""

  def __init__(self, state_dict: Mapping[str, Any]):
    self._sd = state_dict
    self.used: set[str] = set()

  def __call__(self, name: str) -> np.ndarray:
    if name not in self._sd:
      raise KeyError(f"Hugging Face checkpoint lacks tensor {name!r}.")
    self.used.add(name)
    return np.asarray(self._sd[name], dtype=np.float32)


def _attention(read: _Reader, prefix: str, cfg: T5Config) -> Params:
  e, h, d = cfg.d_model, cfg.num_heads, cfg.d_kv
  out = {}
  for ours, theirs in (("query", "q"), ("key", "k"), ("value", "v")):
    out[ours] = read(f"{prefix}.{theirs}.weight").T.reshape(e, h, d)
  out["out"] = read(f"{prefix}.o.weight").T.reshape(h, d, e)
  return out


def _mlp(read: _Reader, prefix: str) -> Params:
  return {name: {"kernel": read(f"{prefix}.{name}.weight").T}
          for name in ("wi_0", "wi_1", "wo")}


def _norm(read: _Reader, name: str) -> Params:
  return {"scale": read(name)}


def params_from_hf_state_dict(state_dict: Mapping[str, Any],
                              cfg: T5Config) -> Params:
  """Maps a HF T5 1.1 state dict to the parameter tree of `models.T5`.

  Args:
    state_dict: tensor name -> array (NumPy or anything `np.asarray` takes).
    cfg: the target configuration (layer counts decide which names are read).

  Returns:
    Nested dict of float32 NumPy arrays with the structure of `T5` params.

  Raises:
    KeyError: a tensor the configuration needs is absent.
    ValueError: tensors are left over (the checkpoint has more layers or
      parts than `cfg`), listing them.
  """
  read = _Reader(state_dict)
  enc: Params = {"relpos_bias": {"rel_embedding": read(
      "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")}}
  for i in range(cfg.num_encoder_layers):
    b = f"encoder.block.{i}.layer"
    enc[f"layers_{i}"] = {
        "pre_attention_norm": _norm(read, f"{b}.0.layer_norm.weight"),
        "attention": _attention(read, f"{b}.0.SelfAttention", cfg),
        "pre_mlp_norm": _norm(read, f"{b}.1.layer_norm.weight"),
        "mlp": _mlp(read, f"{b}.1.DenseReluDense"),
    }
  enc["encoder_norm"] = _norm(read, "encoder.final_layer_norm.weight")
  dec: Params = {"relpos_bias": {"rel_embedding": read(
      "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")}}
  for i in range(cfg.num_decoder_layers):
    b = f"decoder.block.{i}.layer"
    dec[f"layers_{i}"] = {
        "pre_self_attention_norm": _norm(read, f"{b}.0.layer_norm.weight"),
        "self_attention": _attention(read, f"{b}.0.SelfAttention", cfg),
        "pre_cross_attention_norm": _norm(read, f"{b}.1.layer_norm.weight"),
        "encoder_decoder_attention": _attention(
            read, f"{b}.1.EncDecAttention", cfg),
        "pre_mlp_norm": _norm(read, f"{b}.2.layer_norm.weight"),
        "mlp": _mlp(read, f"{b}.2.DenseReluDense"),
    }
  dec["decoder_norm"] = _norm(read, "decoder.final_layer_norm.weight")
  params = {
      "token_embedder": {"embedding": read("shared.weight")},
      "encoder": enc,
      "decoder": dec,
      "logits_dense": {"kernel": read(
          "lm_head.weight" if "lm_head.weight" in state_dict else
          "shared.weight").T},
  }
  # Tied copies of the shared embedding are expected and carry nothing new.
  aliases = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
             "lm_head.weight"}
  leftover = sorted(set(state_dict) - read.used - aliases)
  if leftover:
    raise ValueError(
        f"Hugging Face checkpoint has {len(leftover)} tensors that the "
        f"configuration does not use (e.g. {leftover[:5]}); check the layer "
        "counts in the model config.")
  return params
