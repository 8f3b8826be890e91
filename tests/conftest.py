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
  from nlhf_jax.data import vocab  # pylint: disable=g-import-not-at-top
  from nlhf_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp("small_world")
  synthetic.generate(str(out), seed=1, size=200)
  model = vocab.train_from_data_dir(str(out), str(out / "sp"), 400)
  return str(out), model
