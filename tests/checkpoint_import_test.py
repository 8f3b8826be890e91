"""Tests for importing pretrained T5 weights (Hugging Face and T5X layouts).

The checkpoints are written by the tests from random parameters of our own
model: a Hugging Face directory via `save_hf_t5` (the inverse of
`models.hf_conversion`), and a T5X directory in the legacy msgpack +
tensorstore-zarr layout written here with the T5X T5 1.1 names.
"""

import json
import os

from flax import serialization
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorstore

from nlhf_jax import checkpoint_import as ci
from nlhf_jax import checkpointing
from nlhf_jax import partitioning
from nlhf_jax.models import hf_conversion
from nlhf_jax.models import t5

TINY = t5.T5Config(vocab_size=64, d_model=16, num_heads=2, d_kv=8, d_ff=32,
                   num_encoder_layers=2, num_decoder_layers=1)
_TOKENS = jnp.ones((2, 4), jnp.int32)


@pytest.fixture(scope="module")
def params():
  init = jax.jit(lambda: nn.unbox(t5.T5(TINY).init(
      jax.random.PRNGKey(0), _TOKENS, _TOKENS)["params"]))
  return jax.tree.map(np.asarray, init())


@pytest.fixture(scope="module")
def scorer():
  """(abstract params with shardings, fresh sharded params) of a T5Scorer."""
  mesh = partitioning.make_mesh(partitioning.MeshConfig(data=-1))
  init = lambda: t5.T5Scorer(TINY).init(jax.random.PRNGKey(3),
                                        _TOKENS)["params"]
  boxed = jax.eval_shape(init)
  shardings = partitioning.logical_shardings(boxed, mesh)
  abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      nn.unbox(boxed), shardings)
  return abstract, partitioning.sharded_init(init, mesh)[0]


def _assert_trees_equal(a, b):
  fa, fb = ci.flatten(a), ci.flatten(b)
  assert sorted(fa) == sorted(fb)
  for name in fa:
    np.testing.assert_array_equal(np.asarray(fa[name]), np.asarray(fb[name]),
                                  err_msg=name)


def test_hf_round_trip(params, tmp_path):
  ci.save_hf_t5(params, TINY, str(tmp_path))
  with open(tmp_path / "config.json", encoding="utf-8") as f:
    assert hf_conversion.config_from_hf(json.load(f)) == TINY
  loaded, cfg = ci.load_hf_t5(str(tmp_path))
  assert cfg == TINY
  _assert_trees_equal(loaded, params)


def test_hf_state_dict_inverse_matches_forward_mapping(params):
  sd = ci.hf_state_dict_from_params(params, TINY)
  assert sd["encoder.block.1.layer.0.SelfAttention.q.weight"].shape == (
      TINY.num_heads * TINY.d_kv, TINY.d_model)
  _assert_trees_equal(hf_conversion.params_from_hf_state_dict(sd, TINY),
                      params)


def _t5x_name_and_value(name, value, cfg):
  """Our parameter -> (T5X T5 1.1 name, T5X layout)."""
  inverse = {v: k for k, v in ci.T5X_RENAMES.items()}
  parts = [inverse.get(p, p) for p in name.split("/")]
  value = np.asarray(value)
  if parts[0] == "logits_dense":
    parts = ["decoder"] + parts
  if parts[-1] == "rel_embedding":
    value = value.T
  if len(parts) >= 2 and parts[-2] in ("attention", "self_attention",
                                       "encoder_decoder_attention"):
    hk = cfg.num_heads * cfg.d_kv
    value = (value.reshape(hk, -1) if parts[-1] == "out" else
             value.reshape(-1, hk))
    parts = parts + ["kernel"]
  return "/".join(parts), value


def _write_t5x(params, cfg, ckpt_dir):
  """Legacy T5X layout: msgpack tree + one zarr array per large parameter."""
  os.makedirs(ckpt_dir)
  target = {}
  for name, value in ci.flatten(params).items():
    t5x_name, value = _t5x_name_and_value(name, value, cfg)
    full = "target/" + t5x_name
    if value.ndim == 1:  # Small arrays inline, as T5X does for scalars.
      target[t5x_name] = value
      continue
    rel = full.replace("/", ".")
    metadata = {"shape": list(value.shape), "chunks": list(value.shape),
                "dtype": "<f4", "compressor": {"id": "gzip"}}
    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": rel},
            "metadata": metadata, "dtype": "float32"}
    abs_spec = dict(spec, kvstore={"driver": "file",
                                   "path": os.path.join(ckpt_dir, rel)})
    store = tensorstore.open(abs_spec, create=True).result()
    store.write(value).result()
    target[t5x_name] = spec
  tree = {"version": 3, "optimizer": {
      "target": ci.unflatten(target),
      "state": {"step": np.array(1000), "param_states": {}}}}
  with open(os.path.join(ckpt_dir, "checkpoint"), "wb") as f:
    f.write(serialization.msgpack_serialize(tree))


def test_t5x_checkpoint_is_read_into_our_layout(params, tmp_path):
  _write_t5x(params, TINY, str(tmp_path / "checkpoint_1000"))
  assert ci.detect_format(str(tmp_path)) == "t5x"
  flat = ci.read_t5x_target(str(tmp_path))
  assert flat["encoder/layers_0/attention/query/kernel"].shape == (16, 16)
  assert "encoder/layers_0/pre_attention_layer_norm/scale" in flat
  _assert_trees_equal(ci.load_t5x(str(tmp_path), TINY), params)


def test_t5x_errors_are_clear(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a T5X checkpoint"):
    ci.find_t5x_checkpoint(str(tmp_path))
  bad = tmp_path / "checkpoint_1"
  bad.mkdir()
  (bad / "checkpoint").write_bytes(b"\xc1garbage")
  with pytest.raises(ValueError, match="not a msgpack T5X checkpoint"):
    ci.read_t5x_target(str(tmp_path))


def test_fit_to_target_reports_names_and_shapes(params):
  smaller = t5.T5Config(**{**TINY.__dict__, "num_encoder_layers": 1})
  target = nn.unbox(jax.eval_shape(lambda: t5.T5(smaller).init(
      jax.random.PRNGKey(0), _TOKENS, _TOKENS)["params"]))
  with pytest.raises(ValueError, match=r"does not have .*layers_1"):
    ci.fit_to_target(params, target, source_name="test")
  wider = t5.T5Config(**{**TINY.__dict__, "d_ff": 40})
  target = nn.unbox(jax.eval_shape(lambda: t5.T5(wider).init(
      jax.random.PRNGKey(0), _TOKENS, _TOKENS)["params"]))
  with pytest.raises(ValueError, match=r"wi_0/kernel: checkpoint \(16, 32\) "
                     r"vs model \(16, 40\)"):
    ci.fit_to_target(params, target, source_name="test")


@pytest.mark.parametrize("fmt", ["hf", "t5x"])
def test_scorer_initialised_from_pretrained_lm(params, scorer, tmp_path,
                                               fmt):
  if fmt == "hf":
    ci.save_hf_t5(params, TINY, str(tmp_path))
  else:
    _write_t5x(params, TINY, str(tmp_path / "checkpoint_7"))
  abstract, fresh = scorer
  loaded = checkpointing.load_initial_params(
      checkpointing.InitConfig(path=str(tmp_path)), TINY, abstract,
      lambda: fresh, allow_missing=("score_head",),
      ignore_unused=("logits_dense",))
  _assert_trees_equal(loaded["encoder"], params["encoder"])
  _assert_trees_equal(loaded["token_embedder"], params["token_embedder"])
  _assert_trees_equal(loaded["score_head"], fresh["score_head"])
  with pytest.raises(ValueError, match="score_head"):
    checkpointing.load_initial_params(
        checkpointing.InitConfig(path=str(tmp_path)), TINY, abstract,
        lambda: fresh, ignore_unused=("logits_dense",))


def test_hf_config_mismatch_is_reported(params, tmp_path):
  ci.save_hf_t5(params, TINY, str(tmp_path))
  other = t5.T5Config(**{**TINY.__dict__, "vocab_size": 128})
  with pytest.raises(ValueError, match="vocab_size=64 but the model config "
                     "says 128"):
    ci.load_pretrained(str(tmp_path), "hf", other)
