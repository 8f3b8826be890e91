"""Tests for the sampling engine: cache exactness, mixture law, EOS, sharding.

Each jitted sampler is compiled once per module (fixtures) and reused.
"""

import contextlib
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from nlhf_jax import mixtures
from nlhf_jax import partitioning
from nlhf_jax import sampling
from nlhf_jax.errors import ConfigError
from nlhf_jax.models import T5
from nlhf_jax.models import T5Config
from nlhf_jax.models import shift_right

VOCAB = 64
POLICY = T5(T5Config(vocab_size=VOCAB, d_model=32, num_heads=4, d_kv=8,
                     d_ff=64, num_encoder_layers=2, num_decoder_layers=2))
# The main reference shares the policy's architecture (other weights), so one
# compiled plain sampler serves both β end points; the mixture-law test uses
# a reference of another size: mixtures must work across configs.
REFERENCE = POLICY
OTHER_REFERENCE = T5(T5Config(vocab_size=VOCAB, d_model=48, num_heads=2,
                              d_kv=16, d_ff=32, num_encoder_layers=1,
                              num_decoder_layers=3))
# A scanned-layers policy (stacked params and caches) for the greedy test.
SCANNED = T5(T5Config(vocab_size=VOCAB, d_model=32, num_heads=4, d_kv=8,
                      d_ff=64, num_encoder_layers=2, num_decoder_layers=2,
                      scan_layers=True))
BATCH, PROMPT_LEN, MAX_LEN = 8, 6, 8
CONFIG = sampling.SamplingConfig(max_decode_length=MAX_LEN,
                                 return_logits=True)


def _abstract_params(model):
  tokens = jax.ShapeDtypeStruct((1, 4), jnp.int32)
  return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, x),
                        tokens)["params"]


def _init(model, seed):
  """Random weights of the model's shapes, drawn with numpy.

  Compiling flax's threefry-based `init` takes 10-20 s on a loaded 2-core
  CPU, so tests draw N(0, 1/fan_in) kernels (fan_in = leading dim, after
  the stacked layer axis of scanned stacks) and unit norm scales instead:
  logits come out O(1), as with the real init.
  """
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    keys = [getattr(k, "key", None) for k in path]
    if keys[-1] == "scale":
      return jnp.ones(leaf.shape, leaf.dtype)
    fan_in = leaf.shape[1] if "layers" in keys else leaf.shape[0]
    return jnp.asarray(rng.normal(size=leaf.shape) * fan_in ** -0.5,
                       leaf.dtype)

  return jax.tree_util.tree_map_with_path(
      draw, nn.unbox(_abstract_params(model)))


def _prompts(seed, batch=BATCH):
  tokens = np.random.default_rng(seed).integers(2, VOCAB,
                                                (batch, PROMPT_LEN))
  tokens[0, -2:] = 0     # one padded prompt
  return jnp.asarray(tokens, jnp.int32)


def _beta(value):
  """One β per row, [BATCH, 1] (the layout the online algorithms use)."""
  return jnp.full((BATCH, 1), value, jnp.float32)


def _boost_eos(params, factor=8.0):
  """Same shapes, EOS logit scaled up so most rows stop early."""
  kernel = np.array(params["logits_dense"]["kernel"])  # [embed, vocab]
  kernel[:, sampling.EOS_ID] *= factor
  return {**params, "logits_dense": {"kernel": jnp.asarray(kernel)}}


class _Counted:
  """A jitted function that counts its traces (Python side effect)."""

  def __init__(self, fn):
    self.traces = 0

    def traced(*args):
      self.traces += 1
      return fn(*args)

    self.jitted = jax.jit(traced)

  def __call__(self, *args):
    return self.jitted(*args)


@pytest.fixture(scope="module")
def params():
  return _init(POLICY, 0), _init(REFERENCE, 1)


@pytest.fixture(scope="module")
def mixture_fn():
  return _Counted(lambda p, q, x, rng, beta: sampling.sample_mixture(
      POLICY, p, REFERENCE, q, x, rng, beta, CONFIG))


@pytest.fixture(scope="module")
def plain_fn():
  """Plain sampling of POLICY-shaped models (policy or reference weights)."""
  return jax.jit(functools.partial(
      sampling.sample, POLICY,
      config=dataclasses.replace(CONFIG, return_logits=False)))


@pytest.fixture(scope="module")
def mixed(mixture_fn, params):
  p, q = params
  return mixture_fn(p, q, _prompts(0), jax.random.PRNGKey(7),
                    _beta(0.5))


@jax.jit
def _teacher_forced_logits(p, prompts, tokens):
  """Full uncached forward of POLICY-shaped weights on given tokens."""
  return POLICY.apply({"params": p}, prompts, shift_right(tokens))


def test_cached_logits_match_full_forward(mixed, params):
  p, q = params
  prompts = _prompts(0)
  steps = int(mixed.lengths.max())   # steps the loop executed
  for prm, recorded, token_lp in (
      (p, mixed.policy_logits, mixed.policy_log_probs),
      (q, mixed.reference_logits, mixed.reference_log_probs)):
    full = _teacher_forced_logits(prm, prompts, mixed.tokens)
    np.testing.assert_allclose(recorded[:, :steps], full[:, :steps],
                               atol=1e-5)
    gathered = jnp.take_along_axis(jax.nn.log_softmax(full),
                                   mixed.tokens[..., None], -1)[..., 0]
    np.testing.assert_allclose(token_lp, gathered * mixed.mask, atol=1e-5)


def test_sampling_log_probs_are_the_mixture(mixed):
  z = mixtures.geometric_mixture_log_probs(
      jax.nn.log_softmax(mixed.policy_logits),
      jax.nn.log_softmax(mixed.reference_logits), 0.5)
  expected = jnp.take_along_axis(z, mixed.tokens[..., None], -1)[..., 0]
  np.testing.assert_allclose(mixed.sampling_log_probs,
                             expected * mixed.mask, atol=1e-5)


def test_naive_decoder_matches_cached(mixed, params):
  p, q = params
  naive = jax.jit(lambda p, q, x, rng, beta: sampling.sample_mixture(
      POLICY, p, REFERENCE, q, x, rng, beta, CONFIG, use_kv_cache=False))(
          p, q, _prompts(0), jax.random.PRNGKey(7), _beta(0.5))
  np.testing.assert_array_equal(naive.tokens, mixed.tokens)
  np.testing.assert_array_equal(naive.lengths, mixed.lengths)
  steps = int(mixed.lengths.max())
  np.testing.assert_allclose(naive.policy_logits[:, :steps],
                             mixed.policy_logits[:, :steps], atol=1e-5)
  for name in ("sampling_log_probs", "policy_log_probs",
               "reference_log_probs"):
    np.testing.assert_allclose(getattr(naive, name), getattr(mixed, name),
                               atol=1e-5)


@pytest.mark.parametrize("beta,which", [(0.0, "policy"), (1.0, "reference")])
def test_mixture_end_points_reproduce_plain_sampling(beta, which, params,
                                                     mixture_fn, plain_fn):
  p, q = params
  prompts, rng = _prompts(3), jax.random.PRNGKey(11)
  mix = mixture_fn(p, q, prompts, rng, _beta(beta))
  plain = plain_fn(p if which == "policy" else q, prompts, rng)
  np.testing.assert_array_equal(mix.tokens, plain.tokens)
  np.testing.assert_array_equal(mix.lengths, plain.lengths)
  np.testing.assert_array_equal(mix.sampling_log_probs,
                                plain.sampling_log_probs)
  own = mix.policy_log_probs if which == "policy" else mix.reference_log_probs
  np.testing.assert_array_equal(own, plain.policy_log_probs)
  # The mixture at 0 < β < 1 really differs from both end points.
  half = mixture_fn(p, q, prompts, rng, _beta(0.5))
  assert (np.asarray(half.tokens) != np.asarray(plain.tokens)).any()


def test_per_row_beta_matches_uniform_beta_runs(params, mixture_fn):
  p, q = params
  prompts, rng = _prompts(3), jax.random.PRNGKey(11)
  betas = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.25, 0.0], np.float32)
  rows = mixture_fn(p, q, prompts, rng, jnp.asarray(betas[:, None]))
  for value in (0.0, 0.25, 0.5, 1.0):
    uniform = mixture_fn(p, q, prompts, rng, _beta(value))
    selected = betas == value
    for name in ("tokens", "lengths", "sampling_log_probs",
                 "policy_log_probs", "reference_log_probs"):
      np.testing.assert_array_equal(
          np.asarray(getattr(rows, name))[selected],
          np.asarray(getattr(uniform, name))[selected], err_msg=name)


def _assert_same_samples(got, want):
  """Same tokens and lengths; per-token log-probs within float rounding."""
  np.testing.assert_array_equal(got.tokens, want.tokens)
  np.testing.assert_array_equal(got.lengths, want.lengths)
  for name in ("sampling_log_probs", "policy_log_probs",
               "reference_log_probs"):
    np.testing.assert_allclose(getattr(got, name), getattr(want, name),
                               atol=1e-5, err_msg=name)


def test_copies_encode_once_and_sample_the_repeated_batch(params,
                                                         mixture_fn):
  """copies=2 on x: the samples of [x; x], on one device and on a mesh."""
  p, q = params
  half, rng = _prompts(4, batch=BATCH // 2), jax.random.PRNGKey(5)
  betas = jnp.asarray(np.repeat([0.0, 0.5], BATCH // 2)[:, None], jnp.float32)
  want = mixture_fn(p, q, jnp.concatenate([half, half]), rng, betas)
  mesh = partitioning.make_mesh(partitioning.MeshConfig(2, 2, 2))
  data = partitioning.batch_sharding(mesh)
  for on_mesh in (False, True):
    with partitioning.activate(mesh) if on_mesh else contextlib.nullcontext():
      got = jax.jit(lambda p, q, x, beta: sampling.sample_mixture(
          POLICY, p, REFERENCE, q, x, rng, beta, CONFIG, copies=2))(
              p, q, jax.device_put(half, data) if on_mesh else half, betas)
    _assert_same_samples(got, want)
  with pytest.raises(ValueError, match="copies must be a positive int"):
    sampling.sample_with_transform((POLICY,), (p,), half, rng, CONFIG,
                                   sampling.identity_transform, copies=0)


def test_eos_padding_lengths_and_mask(mixture_fn, params):
  p, q = params
  out = mixture_fn(_boost_eos(p), _boost_eos(q), _prompts(4),
                   jax.random.PRNGKey(5), _beta(0.3))
  tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
  assert (lengths < MAX_LEN).sum() >= BATCH // 2, "EOS boost ineffective"
  positions = np.arange(MAX_LEN)[None]
  for row, length in zip(tokens, lengths):
    eos = np.flatnonzero(row == sampling.EOS_ID)
    if length < MAX_LEN or eos.size:
      assert eos[0] == length - 1       # length counts the first EOS
    assert (row[length:] == 0).all()
  np.testing.assert_array_equal(out.mask, positions < lengths[:, None])
  for name in ("sampling_log_probs", "policy_log_probs",
               "reference_log_probs"):
    values = np.asarray(getattr(out, name))
    assert (values[positions >= lengths[:, None]] == 0).all(), name
    assert (values[positions < lengths[:, None]] <= 0).all(), name


def test_deterministic_and_compiled_once(mixture_fn, mixed, params):
  p, q = params
  again = mixture_fn(p, q, _prompts(0), jax.random.PRNGKey(7),
                     _beta(0.5))
  jax.tree.map(np.testing.assert_array_equal, again, mixed)
  other = mixture_fn(_boost_eos(p), q, _prompts(1), jax.random.PRNGKey(8),
                     _beta(0.25))
  assert (np.asarray(other.tokens) != np.asarray(mixed.tokens)).any()
  assert mixture_fn.traces == 1
  # pylint: disable-next=protected-access
  assert mixture_fn.jitted._cache_size() == 1


def test_greedy_with_scanned_layers_is_the_argmax_of_the_model():
  p = _init(SCANNED, 3)
  prompts, rng = _prompts(6), jax.random.PRNGKey(2)
  config = sampling.SamplingConfig(max_decode_length=MAX_LEN,
                                   temperature=0.0, return_logits=True)
  out = jax.jit(functools.partial(sampling.sample, SCANNED, config=config))(
      p, prompts, rng)
  full = jax.jit(lambda p, x, y: SCANNED.apply({"params": p}, x,
                                               shift_right(y)))(
                                                   p, prompts, out.tokens)
  steps = int(out.lengths.max())
  np.testing.assert_allclose(out.policy_logits[:, :steps], full[:, :steps],
                             atol=1e-5)
  mask = np.asarray(out.mask, bool)
  np.testing.assert_array_equal(np.asarray(out.tokens)[mask],
                                np.asarray(jnp.argmax(full, -1))[mask])
  np.testing.assert_array_equal(out.sampling_log_probs, 0.0)
  gathered = jnp.take_along_axis(jax.nn.log_softmax(full),
                                 out.tokens[..., None], -1)[..., 0]
  np.testing.assert_allclose(out.policy_log_probs, gathered * out.mask,
                             atol=1e-5)


@pytest.mark.parametrize("top_k,top_p", [(1, None), (None, 1e-3),
                                         (3, 1e-3)])
def test_choose_tokens_truncated_to_one_is_argmax(top_k, top_p):
  # `choose_tokens` is the per-step draw of the decoding loop.
  logits = jnp.asarray(np.random.default_rng(3).normal(size=(256, VOCAB)) * 2,
                       jnp.float32)
  config = sampling.SamplingConfig(max_decode_length=1, temperature=3.0,
                                   top_k=top_k, top_p=top_p)
  tokens, log_probs = jax.jit(sampling.choose_tokens, static_argnums=2)(
      jax.random.PRNGKey(4), logits, config)
  np.testing.assert_array_equal(tokens, jnp.argmax(logits, -1))
  np.testing.assert_array_equal(log_probs, 0.0)


def test_first_argmax_is_argmax_with_ties_and_draws_match_categorical():
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.integers(0, 4, size=(64, 9)), jnp.float32)  # ties
  np.testing.assert_array_equal(sampling.first_argmax(x), jnp.argmax(x, -1))
  # The sampled draw is jax.random.categorical's, token for token.
  logits = jnp.asarray(rng.normal(size=(128, VOCAB)), jnp.float32)
  config = sampling.SamplingConfig(max_decode_length=1, temperature=1.0)
  key = jax.random.PRNGKey(6)
  tokens, _ = jax.jit(sampling.choose_tokens, static_argnums=2)(
      key, logits, config)
  np.testing.assert_array_equal(tokens,
                                jax.random.categorical(key, logits, -1))
  assert tokens.dtype == jnp.int32


def _chisquare_p(counts, probs):
  """Chi-square p-value, bins with expected count < 5 merged into one."""
  expected = probs * counts.sum()
  small = expected < 5
  obs, exp = counts[~small], expected[~small]
  if small.any():
    obs = np.append(obs, counts[small].sum())
    exp = np.append(exp, expected[small].sum())
  return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_first_token_frequencies_follow_tempered_geometric_mixture(
    params, temperature):
  p, _ = params
  q = _init(OTHER_REFERENCE, 2)
  n, beta = 20_000, 0.5
  prompts = jnp.tile(_prompts(9, 1), (n, 1))
  config = sampling.SamplingConfig(max_decode_length=1,
                                   temperature=temperature,
                                   return_logits=True)
  out = jax.jit(lambda p, q, x, rng: sampling.sample_mixture(
      POLICY, p, OTHER_REFERENCE, q, x, rng, beta, config))(
          p, q, prompts, jax.random.PRNGKey(0))
  counts = np.bincount(np.asarray(out.tokens[:, 0]), minlength=VOCAB)
  # Every row saw the same prompt, so row 0's logits define the law.
  lp = np.asarray(jax.nn.log_softmax(out.policy_logits[0, 0]), np.float64)
  lq = np.asarray(jax.nn.log_softmax(out.reference_logits[0, 0]), np.float64)
  np.testing.assert_allclose(out.policy_logits[:, 0],
                             np.broadcast_to(out.policy_logits[0, 0],
                                             (n, VOCAB)), atol=1e-5)
  z = (1 - beta) * lp + beta * lq

  def softmax(logits):
    e = np.exp(logits - logits.max())
    return e / e.sum()

  assert _chisquare_p(counts, softmax(z / temperature)) > 1e-3
  # The test has power: close alternatives are rejected.
  alternatives = {
      "policy only": softmax(lp / temperature),
      "arithmetic mixture": ((1 - beta) * softmax(lp / temperature) +
                             beta * softmax(lq / temperature)),
  }
  if temperature != 1.0:
    alternatives["no temperature"] = softmax(z)
  for name, probs in alternatives.items():
    assert _chisquare_p(counts, probs) < 1e-6, name


def test_sharded_run_matches_unsharded(mixed, params):
  p, q = params
  mesh = partitioning.make_mesh(partitioning.MeshConfig(2, 2, 2))
  shardings = partitioning.logical_shardings(_abstract_params(POLICY), mesh)
  p_sh, q_sh = jax.device_put((p, q), (shardings, shardings))
  embedding = p_sh["token_embedder"]["embedding"]     # [vocab, embed]
  assert embedding.addressable_shards[0].data.shape == (VOCAB // 2, 32 // 2)
  data = partitioning.batch_sharding(mesh)
  rep = partitioning.replicated(mesh)
  with partitioning.activate(mesh):
    fn = jax.jit(
        lambda p, q, x, rng, beta: sampling.sample_mixture(
            POLICY, p, REFERENCE, q, x, rng, beta, CONFIG),
        in_shardings=(shardings, shardings, data, rep, data),
        out_shardings=data)
    out = fn(p_sh, q_sh, jax.device_put(_prompts(0), data),
             jax.random.PRNGKey(7), jax.device_put(_beta(0.5), data))
  assert out.tokens.sharding.spec == data.spec
  assert out.tokens.addressable_shards[0].data.shape == (BATCH // 4, MAX_LEN)
  _assert_same_samples(out, mixed)


def test_filters_keep_the_right_sets():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(64, 20)) * 2,
                       jnp.float32)
  config = sampling.SamplingConfig(max_decode_length=1, top_k=5)
  kept = np.isfinite(np.asarray(
      jax.jit(sampling.filter_logits, static_argnums=1)(logits, config)))
  top5 = np.argsort(-np.asarray(logits), -1)[:, :5]
  expected = np.zeros_like(kept)
  np.put_along_axis(expected, top5, True, -1)
  np.testing.assert_array_equal(kept, expected)

  config = sampling.SamplingConfig(max_decode_length=1, top_p=0.6,
                                   temperature=0.5)
  kept = np.isfinite(np.asarray(
      jax.jit(sampling.filter_logits, static_argnums=1)(logits, config)))
  probs = np.asarray(jax.nn.softmax(logits / 0.5))
  for row_p, row_kept in zip(probs, kept):
    order = np.argsort(-row_p)
    before = np.cumsum(row_p[order]) - row_p[order]
    np.testing.assert_array_equal(row_kept[order], before < 0.6)
    assert row_p[row_kept].sum() >= 0.6 - 1e-6


def test_config_and_input_errors(params):
  p, q = params
  with pytest.raises(ConfigError, match="max_decode_length"):
    sampling.SamplingConfig(max_decode_length=0)
  with pytest.raises(ConfigError, match="temperature"):
    sampling.SamplingConfig(max_decode_length=4, temperature=-1.0)
  with pytest.raises(ConfigError, match="top_k"):
    sampling.SamplingConfig(max_decode_length=4, top_k=0)
  with pytest.raises(ConfigError, match="top_p"):
    sampling.SamplingConfig(max_decode_length=4, top_p=1.0)
  other = T5(T5Config(vocab_size=VOCAB + 2, d_model=32, num_heads=4, d_kv=8,
                      d_ff=64, num_encoder_layers=1, num_decoder_layers=1))
  with pytest.raises(ValueError, match="share a vocabulary"):
    sampling.sample_mixture(POLICY, p, other, q, _prompts(0),
                            jax.random.PRNGKey(0), 0.5, CONFIG)
  with pytest.raises(ValueError, match=r"integer array \[batch, length\]"):
    sampling.sample(POLICY, p, _prompts(0)[0], jax.random.PRNGKey(0), CONFIG)
  with pytest.raises(ValueError, match="one or two models"):
    sampling.sample_with_transform((POLICY,) * 3, (p,) * 3, _prompts(0),
                                   jax.random.PRNGKey(0), CONFIG,
                                   sampling.identity_transform)
