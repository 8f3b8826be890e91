"""Mesh construction, logical-axis sharding and sharded initialisation."""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlhf_jax import partitioning
from nlhf_jax.errors import ConfigError
from nlhf_jax.models import T5
from nlhf_jax.models import T5Config

# Heads, MLP width and vocabulary divisible by 8 so that a model axis of 8
# really splits them.
CFG = T5Config(vocab_size=256, d_model=64, num_heads=8, d_kv=8, d_ff=128,
               num_encoder_layers=2, num_decoder_layers=2)


def test_eight_fake_devices():
  assert jax.device_count() == 8


@pytest.mark.parametrize("cfg,expected", [
    (partitioning.MeshConfig(-1, 1, 1), (8, 1, 1)),
    (partitioning.MeshConfig(2, -1, 2), (2, 2, 2)),
    (partitioning.MeshConfig(1, 1, -1), (1, 1, 8)),
    (partitioning.MeshConfig(2, 1, 4), (2, 1, 4)),
])
def test_mesh_resolution(cfg, expected):
  mesh = partitioning.make_mesh(cfg)
  assert tuple(mesh.shape[a] for a in partitioning.MESH_AXES) == expected


def test_device_count_mismatch_names_both_numbers():
  with pytest.raises(ValueError, match=r"needs 16 devices, but 8"):
    partitioning.make_mesh(partitioning.MeshConfig(4, 2, 2))
  with pytest.raises(ValueError, match=r"multiple of 3 devices, but 8"):
    partitioning.make_mesh(partitioning.MeshConfig(-1, 3, 1))


def test_valid_cpu_meshes_are_built_without_a_fallback_warning():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    mesh = partitioning.make_mesh(partitioning.MeshConfig(2, 2, 2))
  np.testing.assert_array_equal(
      np.vectorize(lambda d: d.id)(mesh.devices).ravel(),
      sorted(d.id for d in jax.devices()))


# create_device_mesh cannot fail on CPU for a shape that resolve() accepts
# (it reshapes), so the fallback decision is tested on its own, with the
# platform name as input and the 8 real CPU devices.
def test_mesh_fallback_warns_and_reshapes_on_cpu():
  error = ValueError("no torus")
  with pytest.warns(RuntimeWarning, match=r"\(2, 1, 4\) over 8 cpu "
                    r"devices: create_device_mesh failed \(ValueError: "
                    r"no torus\)"):
    arr = partitioning.fallback_device_mesh("cpu", (2, 1, 4), jax.devices(),
                                            error)
  assert arr.shape == (2, 1, 4)
  assert list(arr.ravel()) == jax.devices()


def test_mesh_fallback_is_a_config_error_on_tpu():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    with pytest.raises(ConfigError, match=r"\(2, 1, 4\) over 8 tpu "
                       r"devices.*AssertionError"):
      partitioning.fallback_device_mesh("tpu", (2, 1, 4), jax.devices(),
                                        AssertionError("split axes"))


def test_mesh_config_validation():
  with pytest.raises(ValueError, match="at most one axis"):
    partitioning.MeshConfig(-1, -1, 1)
  with pytest.raises(ValueError, match="model"):
    partitioning.MeshConfig(1, 1, 0)


def test_indivisible_dimension_is_replicated():
  mesh = partitioning.make_mesh(partitioning.MeshConfig(1, 1, 8))
  spec = partitioning.logical_to_mesh_spec(("embed", "heads", "kv"),
                                           (64, 6, 8), mesh)
  assert tuple(spec) == (None, None, None)
  spec = partitioning.logical_to_mesh_spec(("embed", "heads", "kv"),
                                           (64, 8, 8), mesh)
  assert tuple(spec) == (None, "model", None)


@pytest.fixture(scope="module")
def batch():
  enc = jax.random.randint(jax.random.PRNGKey(0), (8, 12), 2, 256)
  dec = jax.random.randint(jax.random.PRNGKey(1), (8, 6), 2, 256)
  return np.asarray(enc), np.asarray(dec)


def _sharded_logits(mesh_cfg, batch):
  model = T5(CFG)
  enc, dec = batch
  mesh = partitioning.make_mesh(mesh_cfg)
  params, shardings = partitioning.sharded_init(
      lambda: model.init(jax.random.PRNGKey(2), jnp.asarray(enc),
                         jnp.asarray(dec))["params"], mesh)
  data = partitioning.batch_sharding(mesh)
  with partitioning.activate(mesh):
    fn = jax.jit(lambda p, a, b: model.apply({"params": p}, a, b),
                 in_shardings=(shardings, data, data))
    logits = fn(params, enc, dec)
  return params, np.asarray(logits)


@pytest.fixture(scope="module")
def unsharded(batch):
  """(parameters, logits) of the same initialisation on one device."""
  reference_model = T5(CFG)
  enc, dec = batch

  def init_and_apply(enc, dec):
    params = nn.unbox(reference_model.init(jax.random.PRNGKey(2), enc,
                                           dec)["params"])
    return params, reference_model.apply({"params": params}, enc, dec)

  return jax.device_get(jax.jit(init_and_apply)(enc, dec))


@pytest.mark.parametrize("shape", [(1, 1, 8), (2, 1, 4), (8, 1, 1),
                                   (2, 2, 2)])
def test_same_logits_on_every_mesh_and_really_sharded(shape, batch,
                                                      unsharded):
  ref_params, expected = unsharded
  params, logits = _sharded_logits(partitioning.MeshConfig(*shape), batch)
  np.testing.assert_allclose(logits, expected, atol=1e-5)

  data, fsdp, model = shape
  wi = params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]  # [embed, mlp]
  query = params["decoder"]["layers_1"]["self_attention"]["query"]
  embedding = params["token_embedder"]["embedding"]     # [vocab, embed]
  assert wi.addressable_shards[0].data.shape == (64 // fsdp, 128 // model)
  assert query.addressable_shards[0].data.shape == (64 // fsdp, 8 // model, 8)
  assert embedding.addressable_shards[0].data.shape == (256 // model,
                                                        64 // fsdp)
  # Parameters are identical to the unsharded initialisation.
  np.testing.assert_array_equal(np.asarray(wi),
                                ref_params["encoder"]["layers_0"]["mlp"]
                                ["wi_0"]["kernel"])


def test_parameter_report_lists_every_parameter():
  mesh = partitioning.make_mesh(partitioning.MeshConfig(2, 2, 2))
  model = T5(CFG)
  tokens = jnp.ones((1, 4), jnp.int32)
  boxed = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), tokens, tokens)["params"])
  shardings = partitioning.logical_shardings(boxed, mesh)
  params = nn.unbox(boxed)  # Shapes are all the report reads.
  report = partitioning.parameter_report(params, shardings)
  assert len(report.splitlines()) == len(jax.tree.leaves(params))
  assert "encoder/layers_0/mlp/wi_0/kernel\tshape=(64, 128)\t" \
         "shard=(32, 64)\tspec=('fsdp', 'model')" in report


def test_initialize_distributed_is_a_no_op_for_single_process(monkeypatch):
  for var in ("NLHF_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES",
              "SLURM_JOB_ID", "MEGASCALE_COORDINATOR_ADDRESS"):
    monkeypatch.delenv(var, raising=False)
  assert partitioning.initialize_distributed() is False
