"""Test set-up: 8 fake CPU devices, set before JAX initialises its backends."""

import dataclasses
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The tests' models are tiny, so XLA's compile time, not the compiled code's
# speed, dominates the suite: LLVM's expensive passes are skipped and the
# backend optimises least (level 0: about 28% less CPU time for the online
# job and step tests). Level 0 changes floating-point rounding (e.g. the
# preference model's learning test), never what a test asserts: every
# comparison in the suite is between runs under the same flags or against
# a tolerance. Benchmarks set their own XLA_FLAGS.
_FLAGS = ("--xla_force_host_platform_device_count=8",
          "--xla_llvm_disable_expensive_passes=true",
          "--xla_backend_optimization_level=0")
for _flag in _FLAGS:
  if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " +
                               _flag).strip()

# One persistent compilation cache for the whole run, shared by the pytest
# workers and the subprocesses they start: many tests compile the same tiny
# programs. Created by the first process (the xdist controller, whose
# environment the workers inherit) and removed at the end of the session.
_OWN_CACHE = None
if ("JAX_COMPILATION_CACHE_DIR" not in os.environ and
    "PYTEST_XDIST_WORKER" not in os.environ):
  _OWN_CACHE = tempfile.mkdtemp(prefix="nlhf_jax_test_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
  if _OWN_CACHE is not None:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


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


def _synthetic_world(tmp_path_factory, name, seed, size, pieces):
  """(data_dir, vocabulary path) of a generated world and its vocabulary."""
  from nlhf_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  from nlhf_jax.data import vocab  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp(name)
  synthetic.generate(str(out), seed=seed, size=size)
  return str(out), vocab.train_from_data_dir(str(out), str(out / "sp"),
                                             pieces)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
  """(data_dir, vocabulary path): a 200-post synthetic world, 400 pieces."""
  return _synthetic_world(tmp_path_factory, "small_world", 1, 200, 400)


@pytest.fixture(scope="session")
def small_model():
  """The smallest T5 1.1-shaped model that learns the synthetic tasks."""
  from nlhf_jax.models import t5  # pylint: disable=g-import-not-at-top
  return t5.T5Config(vocab_size=512, d_model=32, num_heads=2, d_kv=16,
                     d_ff=64, num_encoder_layers=1, num_decoder_layers=1)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
  """(data_dir, vocabulary path): 2000 posts, 4000 comparisons, 512 pieces."""
  return _synthetic_world(tmp_path_factory, "world", 0, 2000, 512)


class ToySftCli:
  """Command lines of a tiny SFT run through the gin entry point.

  The run is `gin_configs/runs/sft.gin` on a toy copy task with a very small
  T5 on the 8 fake CPU devices (2x2x2 mesh); every process shares one
  persistent compilation cache, so only the first one compiles.
  """

  def __init__(self, root):
    from nlhf_jax.testing import toy_data  # pylint: disable=g-import-not-at-top
    self.repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    self.gin_file = root / "toy.gin"
    self.gin_file.write_text(toy_data.TOY_SFT_GIN)
    self.env = dict(os.environ, JAX_PLATFORMS="cpu",
                    JAX_COMPILATION_CACHE_DIR=str(root / "xla_cache"),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

  def command(self, workdir, *, steps, every=10, extra=()):
    import sys  # pylint: disable=g-import-not-at-top
    from nlhf_jax.testing import toy_data  # pylint: disable=g-import-not-at-top
    return toy_data.toy_sft_command(sys.executable, str(self.gin_file),
                                    str(workdir), steps=steps, every=every,
                                    extra=tuple(extra))

  def run(self, workdir, **kw):
    """Runs to completion; returns the CompletedProcess (text output)."""
    import subprocess  # pylint: disable=g-import-not-at-top
    return subprocess.run(self.command(workdir, **kw), cwd=self.repo,
                          env=self.env, capture_output=True, text=True,
                          timeout=600)

  def start(self, workdir, **kw):
    """Starts a run in the background (stdout and stderr merged)."""
    import subprocess  # pylint: disable=g-import-not-at-top
    return subprocess.Popen(self.command(workdir, **kw), cwd=self.repo,
                            env=self.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="session")
def toy_sft(tmp_path_factory):
  """A `ToySftCli` with its own gin file and compilation cache."""
  return ToySftCli(tmp_path_factory.mktemp("toy_sft"))


@dataclasses.dataclass(frozen=True)
class TextWorld:
  """Canonical prompts of synthetic posts, their reference TL;DRs and one
  summary per post from each of the world's summary policies."""
  prompts: list[str]
  references: list[str]
  summaries: dict[str, list[str]]


def make_text_world(num_posts: int, seed: int = 0) -> TextWorld:
  """Real posts of `nlhf_jax.data.synthetic` and summaries drawn with
  generators independent of the posts' own TL;DRs (pure Python/numpy)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from nlhf_jax.data import annotators  # pylint: disable=g-import-not-at-top
  from nlhf_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  from nlhf_jax.data import synthetic_text as st  # pylint: disable=g-import-not-at-top
  taken = set()
  posts = [synthetic.make_post(seed, i, taken) for i in range(num_posts)]
  prompts = [annotators.canonical_prompt(p.situation.subreddit, p.title,
                                         p.post) for p in posts]
  summaries = {}
  for j, policy in enumerate(st.POLICIES):
    summaries[policy] = [
        st.write_summary(np.random.default_rng([seed, 100 + j, i]),
                         p.situation, policy, post=p.post)
        for i, p in enumerate(posts)]
  return TextWorld(prompts, [p.summary for p in posts], summaries)


@pytest.fixture(scope="session")
def synthetic_world() -> TextWorld:
  """48 posts of `make_text_world` (evaluation and text-judge tests)."""
  return make_text_world(48)
