"""Pretrained T5 weights as initial parameters: Hugging Face and T5X formats.

* Hugging Face: a directory with `config.json` and `model.safetensors` (or
  sharded `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`)
  of a T5 1.1 `T5ForConditionalGeneration`; names and layouts are mapped by
  `models.hf_conversion`. `save_hf_t5` writes our parameters in that format
  (the inverse mapping), e.g. to inspect a trained policy with `transformers`.
* T5X: a `checkpoint_<step>/` directory whose `checkpoint` file is a msgpack
  tree `{'version': 3, 'optimizer': {'target': params, 'state': ...}}` (or
  `{'target': ...}` for version 0); large arrays are stored next to it as
  tensorstore zarr arrays (`target.encoder.layers_0.attention.query.kernel/`)
  and the tree holds their tensorstore spec with a relative path (the
  format of the public T5 1.1 T5X checkpoints). T5X checkpoints written in
  the newer Orbax format are not read here.
  T5X T5 1.1 names map onto ours as `T5X_RENAMES` describes; attention
  kernels [embed, heads*kv] are split into [embed, heads, kv] (`out`:
  [heads*kv, embed] -> [heads, kv, embed]); `rel_embedding` is stored
  [heads, buckets] in T5X and [buckets, heads] here.

`fit_to_target` then checks the loaded tree against the parameters of the
module being initialised: every target leaf must be present with the same
shape unless listed in `allow_missing` (kept from the fresh initialisation,
e.g. a new `score_head`), and every source leaf must be used unless listed
in `ignore_unused` (e.g. `logits_dense` when a scorer starts from an LM).
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from nlhf_jax.models import hf_conversion
from nlhf_jax.models import t5

Params = dict[str, Any]

# T5X T5 1.1 module names -> ours (applied to each path component).
T5X_RENAMES = {
    "pre_attention_layer_norm": "pre_attention_norm",
    "pre_self_attention_layer_norm": "pre_self_attention_norm",
    "pre_cross_attention_layer_norm": "pre_cross_attention_norm",
    "pre_mlp_layer_norm": "pre_mlp_norm",
}
_ATTENTION = ("attention", "self_attention", "encoder_decoder_attention")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """Nested dicts -> {'a/b/c': leaf}."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flatten(value, name + "/"))
    else:
      out[name] = value
  return out


def unflatten(flat: Mapping[str, Any]) -> Params:
  """{'a/b/c': leaf} -> nested dicts."""
  out: Params = {}
  for name, value in flat.items():
    node = out
    *parents, leaf = name.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return out


def _matches(name: str, prefixes: Sequence[str]) -> bool:
  return any(name == p or name.startswith(p.rstrip("/") + "/")
             for p in prefixes)


def check_tree_matches(source_shapes: Mapping[str, Any], target: Any, *,
                       source: str, allow_missing: Sequence[str] = (),
                       ignore_unused: Sequence[str] = ()) -> None:
  """Raises ValueError listing name and shape mismatches.

  Args:
    source_shapes: flat {name: shape} of the checkpoint.
    target: nested tree of arrays / ShapeDtypeStructs to be filled.
    source: description of the checkpoint for the message.
    allow_missing: target name prefixes that may be absent from the source.
    ignore_unused: source name prefixes that may be left unused.
  """
  target_flat = flatten(target)
  missing = [n for n in target_flat
             if n not in source_shapes and not _matches(n, allow_missing)]
  unused = [n for n in source_shapes
            if n not in target_flat and not _matches(n, ignore_unused)]
  bad_shape = [
      f"{n}: checkpoint {tuple(source_shapes[n])} vs model "
      f"{tuple(target_flat[n].shape)}"
      for n in target_flat if n in source_shapes
      and source_shapes[n] is not None
      and tuple(source_shapes[n]) != tuple(target_flat[n].shape)]
  problems = []
  if missing:
    problems.append(f"{len(missing)} parameters missing from the checkpoint "
                    f"(e.g. {missing[:5]})")
  if unused:
    problems.append(f"{len(unused)} checkpoint arrays the model does not "
                    f"have (e.g. {unused[:5]})")
  if bad_shape:
    problems.append(f"{len(bad_shape)} shape mismatches (e.g. "
                    f"{bad_shape[:5]})")
  if problems:
    raise ValueError(f"Cannot initialise from {source}: " +
                     "; ".join(problems) +
                     ". Check the model config (sizes, vocabulary) or list "
                     "intended gaps in allow_missing / ignore_unused.")


def fit_to_target(source: Params, target: Any, *, source_name: str,
                  allow_missing: Sequence[str] = (),
                  ignore_unused: Sequence[str] = ()) -> Params:
  """Source arrays arranged as `target`, or the target leaf where allowed.

  Returns:
    Nested dict with the structure of `target`: source arrays (cast to the
    target dtype) where present, the `target` leaf itself under
    `allow_missing`.
  """
  flat_source = flatten(source)
  check_tree_matches({k: np.shape(v) for k, v in flat_source.items()},
                     target, source=source_name, allow_missing=allow_missing,
                     ignore_unused=ignore_unused)
  out = {}
  for name, leaf in flatten(target).items():
    if name in flat_source:
      out[name] = np.asarray(flat_source[name]).astype(leaf.dtype)
    else:
      out[name] = leaf
  return unflatten(out)


# --------------------------------------------------------------------------
# Hugging Face safetensors.


def _safetensors_files(path: str) -> list[str]:
  index = os.path.join(path, "model.safetensors.index.json")
  if os.path.exists(index):
    with open(index, encoding="utf-8") as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    return [os.path.join(path, s) for s in shards]
  single = os.path.join(path, "model.safetensors")
  if os.path.exists(single):
    return [single]
  found = sorted(glob.glob(os.path.join(path, "*.safetensors")))
  if not found:
    raise FileNotFoundError(f"No *.safetensors files in {path!r}.")
  return found


def load_hf_t5(path: str, **config_overrides) -> tuple[Params, t5.T5Config]:
  """Reads a Hugging Face T5 1.1 checkpoint directory.

  Args:
    path: directory with `config.json` and safetensors weights.
    **config_overrides: T5Config fields to override (e.g. dtype).

  Returns:
    (params of `models.T5` as float32 NumPy arrays, the T5Config).
  """
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  config_path = os.path.join(path, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{path!r} has no config.json (not a Hugging "
                            "Face checkpoint directory).")
  with open(config_path, encoding="utf-8") as f:
    cfg = hf_conversion.config_from_hf(json.load(f), **config_overrides)
  state_dict = {}
  for file in _safetensors_files(path):
    state_dict.update(load_file(file))
  return hf_conversion.params_from_hf_state_dict(state_dict, cfg), cfg


def hf_state_dict_from_params(params: Params,
                              cfg: t5.T5Config) -> dict[str, np.ndarray]:
  """Inverse of `hf_conversion.params_from_hf_state_dict` (T5 1.1 names)."""
  e, h, d = cfg.d_model, cfg.num_heads, cfg.d_kv
  sd: dict[str, np.ndarray] = {}

  def attention(prefix, p):
    for ours, theirs in (("query", "q"), ("key", "k"), ("value", "v")):
      sd[f"{prefix}.{theirs}.weight"] = np.asarray(p[ours]).reshape(
          e, h * d).T
    sd[f"{prefix}.o.weight"] = np.asarray(p["out"]).reshape(h * d, e).T

  def mlp(prefix, p):
    for name in ("wi_0", "wi_1", "wo"):
      sd[f"{prefix}.{name}.weight"] = np.asarray(p[name]["kernel"]).T

  enc, dec = params["encoder"], params["decoder"]
  for i in range(cfg.num_encoder_layers):
    b, p = f"encoder.block.{i}.layer", enc[f"layers_{i}"]
    sd[f"{b}.0.layer_norm.weight"] = p["pre_attention_norm"]["scale"]
    attention(f"{b}.0.SelfAttention", p["attention"])
    sd[f"{b}.1.layer_norm.weight"] = p["pre_mlp_norm"]["scale"]
    mlp(f"{b}.1.DenseReluDense", p["mlp"])
  for i in range(cfg.num_decoder_layers):
    b, p = f"decoder.block.{i}.layer", dec[f"layers_{i}"]
    sd[f"{b}.0.layer_norm.weight"] = p["pre_self_attention_norm"]["scale"]
    attention(f"{b}.0.SelfAttention", p["self_attention"])
    sd[f"{b}.1.layer_norm.weight"] = p["pre_cross_attention_norm"]["scale"]
    attention(f"{b}.1.EncDecAttention", p["encoder_decoder_attention"])
    sd[f"{b}.2.layer_norm.weight"] = p["pre_mlp_norm"]["scale"]
    mlp(f"{b}.2.DenseReluDense", p["mlp"])
  for stack, p in (("encoder", enc), ("decoder", dec)):
    sd[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias."
       "weight"] = p["relpos_bias"]["rel_embedding"]
  sd["encoder.final_layer_norm.weight"] = enc["encoder_norm"]["scale"]
  sd["decoder.final_layer_norm.weight"] = dec["decoder_norm"]["scale"]
  sd["shared.weight"] = params["token_embedder"]["embedding"]
  sd["lm_head.weight"] = np.asarray(params["logits_dense"]["kernel"]).T
  return {k: np.ascontiguousarray(np.asarray(v, np.float32))
          for k, v in sd.items()}


def hf_config_from_t5(cfg: t5.T5Config) -> dict[str, Any]:
  """`config.json` contents of a T5 1.1 model with `cfg`'s dimensions."""
  return {
      "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
      "vocab_size": cfg.vocab_size, "d_model": cfg.d_model,
      "d_kv": cfg.d_kv, "d_ff": cfg.d_ff, "num_heads": cfg.num_heads,
      "num_layers": cfg.num_encoder_layers,
      "num_decoder_layers": cfg.num_decoder_layers,
      "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
      "relative_attention_max_distance": cfg.relative_attention_max_distance,
      "dropout_rate": cfg.dropout_rate,
      "layer_norm_epsilon": cfg.layer_norm_epsilon,
      "feed_forward_proj": "gated-gelu", "is_gated_act": True,
      "dense_act_fn": "gelu_new", "tie_word_embeddings": False,
      "scale_decoder_outputs": False, "decoder_start_token_id": 0,
      "pad_token_id": 0, "eos_token_id": 1,
  }


def save_hf_t5(params: Params, cfg: t5.T5Config, out_dir: str) -> None:
  """Writes `config.json` + `model.safetensors` for `transformers`."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  host = {k: np.asarray(v) for k, v in flatten(params).items()}
  save_file(hf_state_dict_from_params(unflatten(host), cfg),
            os.path.join(out_dir, "model.safetensors"))
  with open(os.path.join(out_dir, "config.json"), "w",
            encoding="utf-8") as f:
    json.dump(hf_config_from_t5(cfg), f, indent=2)


# --------------------------------------------------------------------------
# T5X.


def find_t5x_checkpoint(path: str) -> str:
  """The `checkpoint_<step>` directory: `path` itself or its newest one."""
  if os.path.exists(os.path.join(path, "checkpoint")):
    return path
  steps = []
  for name in os.listdir(path) if os.path.isdir(path) else ():
    match = re.fullmatch(r"checkpoint_(\d+)", name)
    if match and os.path.exists(os.path.join(path, name, "checkpoint")):
      steps.append((int(match.group(1)), name))
  if not steps:
    raise FileNotFoundError(
        f"{path!r} is not a T5X checkpoint (no 'checkpoint' file, no "
        "checkpoint_<step>/ directories).")
  return os.path.join(path, max(steps)[1])


def _read_tensorstore(spec: Mapping[str, Any], ckpt_dir: str) -> np.ndarray:
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  spec = json.loads(json.dumps(spec))  # Deep copy of plain data.
  kvstore = spec.get("kvstore", {})
  if kvstore.get("driver") not in (None, "file", "gfile"):
    raise ValueError(f"T5X array stored with tensorstore driver "
                     f"{kvstore.get('driver')!r}; copy the checkpoint to a "
                     "local directory first.")
  rel = kvstore.get("path", spec.get("path"))
  spec["kvstore"] = {"driver": "file", "path": os.path.join(ckpt_dir, rel)}
  spec.pop("path", None)
  metadata = spec.get("metadata", {})
  for key in ("chunks", "compressor"):
    metadata.pop(key, None)
  return np.asarray(ts.open(spec, open=True).result().read().result())


def _is_ts_spec(value: Any) -> bool:
  return isinstance(value, Mapping) and "driver" in value and (
      "kvstore" in value or "path" in value)


def read_t5x_target(path: str) -> dict[str, np.ndarray]:
  """Flat {'encoder/layers_0/...': array} of a T5X checkpoint's `target`."""
  import msgpack  # pylint: disable=g-import-not-at-top
  from flax import serialization  # pylint: disable=g-import-not-at-top
  ckpt_dir = find_t5x_checkpoint(path)
  with open(os.path.join(ckpt_dir, "checkpoint"), "rb") as f:
    raw = f.read()
  try:
    tree = serialization.msgpack_restore(raw)
  except (ValueError, TypeError, msgpack.exceptions.UnpackException,
          msgpack.exceptions.ExtraData) as e:
    raise ValueError(f"{ckpt_dir}/checkpoint is not a msgpack T5X "
                     f"checkpoint: {e}") from e
  if not isinstance(tree, Mapping):
    raise ValueError(f"{ckpt_dir}/checkpoint does not hold a T5X state "
                     "tree.")
  if "optimizer" in tree:
    tree = tree["optimizer"]
  if "target" not in tree:
    raise ValueError(f"T5X checkpoint {ckpt_dir} has no 'target' entry "
                     f"(top-level keys: {sorted(tree)}).")
  out = {}
  for name, leaf in flatten_with_specs(tree["target"]).items():
    out[name] = (_read_tensorstore(leaf, ckpt_dir) if _is_ts_spec(leaf)
                 else np.asarray(leaf))
  return out


def flatten_with_specs(tree: Mapping[str, Any],
                       prefix: str = "") -> dict[str, Any]:
  """Like `flatten`, keeping tensorstore spec dicts as leaves."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping) and not _is_ts_spec(value):
      out.update(flatten_with_specs(value, name + "/"))
    else:
      out[name] = value
  return out


def params_from_t5x(flat: Mapping[str, np.ndarray],
                    cfg: t5.T5Config) -> Params:
  """Maps flat T5X T5 1.1 `target` arrays onto the `models.T5` layout."""
  h, d = cfg.num_heads, cfg.d_kv
  out = {}
  for name, value in flat.items():
    parts = [T5X_RENAMES.get(p, p) for p in name.split("/")]
    value = np.asarray(value)
    if parts[:2] == ["decoder", "logits_dense"]:
      parts = parts[1:]
    if parts[-1] == "rel_embedding":
      value = value.T
    if (len(parts) >= 3 and parts[-3] in _ATTENTION and
        parts[-1] == "kernel"):
      parts = parts[:-1]
      if parts[-1] == "out":
        value = value.reshape(h, d, value.shape[-1])
      else:
        value = value.reshape(value.shape[0], h, d)
    out["/".join(parts)] = value
  return unflatten(out)


def load_t5x(path: str, cfg: t5.T5Config) -> Params:
  """Reads a T5X T5 1.1 checkpoint into the `models.T5` layout."""
  return params_from_t5x(read_t5x_target(path), cfg)


def detect_format(path: str) -> str:
  """'hf', 't5x' or 'nlhf' from the files under `path`."""
  if os.path.exists(os.path.join(path, "config.json")):
    return "hf"
  if os.path.exists(os.path.join(path, "checkpoint")) or glob.glob(
      os.path.join(path, "checkpoint_*", "checkpoint")):
    return "t5x"
  if (os.path.isdir(os.path.join(path, "state")) or
      os.path.isdir(os.path.join(path, "checkpoints")) or
      any(n.isdigit() for n in os.listdir(path))):
    return "nlhf"
  raise ValueError(f"Cannot tell the checkpoint format of {path!r}: expected "
                   "config.json (Hugging Face), a T5X 'checkpoint' file, or "
                   "an nlhf_jax workdir/checkpoint.")


def load_pretrained(path: str, fmt: str, cfg: t5.T5Config,
                    hf_overrides: Optional[Mapping[str, Any]] = None
                    ) -> Params:
  """Host (NumPy) params of `models.T5` from a HF or T5X checkpoint."""
  if fmt == "hf":
    params, hf_cfg = load_hf_t5(path, **dict(hf_overrides or {}))
    for field in ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff",
                  "num_encoder_layers", "num_decoder_layers"):
      if getattr(hf_cfg, field) != getattr(cfg, field):
        raise ValueError(
            f"Hugging Face checkpoint {path!r} has {field}="
            f"{getattr(hf_cfg, field)} but the model config says "
            f"{getattr(cfg, field)}.")
    return params
  if fmt == "t5x":
    return load_t5x(path, cfg)
  raise ValueError(f"Unknown pretrained format {fmt!r} (use 'hf' or 't5x').")
