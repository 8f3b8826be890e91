"""Test set-up: 8 fake CPU devices, set before JAX initialises its backends."""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()


@pytest.fixture(scope="session")
def random_params():
  """`make(init_fn, seed)`: N(0, 1/fan_in) kernels and unit scales drawn
  with NumPy for the parameters `init_fn` would create (no threefry
  initialisation to compile; for tests that only need some weights)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  def make(init_fn, seed):
    rng = np.random.default_rng(seed)
    abstract = nn.unbox(jax.eval_shape(init_fn))

    def draw(path, leaf):
      if getattr(path[-1], "key", "") == "scale":
        return jnp.ones(leaf.shape, leaf.dtype)
      fan_in = leaf.shape[0] if leaf.ndim > 1 else 1
      return jnp.asarray(rng.normal(0, 1 / np.sqrt(fan_in), leaf.shape),
                         leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract)

  return make


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
  """(data_dir, vocabulary path): a 200-post synthetic world, 400 pieces."""
  from nlhf_jax import jsonl_data  # pylint: disable=g-import-not-at-top
  from nlhf_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp("small_world")
  synthetic.generate(str(out), seed=1, size=200)
  model = jsonl_data.train_sentencepiece(str(out), str(out / "sp"), 400)
  return str(out), model


@pytest.fixture(scope="session")
def small_model():
  """The smallest T5 1.1-shaped model that learns the synthetic tasks."""
  from nlhf_jax.models import t5  # pylint: disable=g-import-not-at-top
  return t5.T5Config(vocab_size=512, d_model=32, num_heads=2, d_kv=16,
                     d_ff=64, num_encoder_layers=1, num_decoder_layers=1)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
  """(data_dir, vocabulary path): 2000 posts, 4000 comparisons, 512 pieces."""
  from nlhf_jax import jsonl_data  # pylint: disable=g-import-not-at-top
  from nlhf_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp("world")
  synthetic.generate(str(out), seed=0, size=2000)
  model = jsonl_data.train_sentencepiece(str(out), str(out / "sp512"), 512)
  return str(out), model
