"""Tests for the T5 1.1 model: shapes, KV cache, sizes, HF equivalence."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlhf_jax import model_info
from nlhf_jax.errors import ConfigError
from nlhf_jax.models import T5
from nlhf_jax.models import T5Config
from nlhf_jax.models import T5Scorer
from nlhf_jax.models import init_decode_cache
from nlhf_jax.models import shift_right
from nlhf_jax.models import hf_conversion
from nlhf_jax.models import layers

TINY = T5Config(vocab_size=128, d_model=32, num_heads=4, d_kv=8, d_ff=64,
                num_encoder_layers=2, num_decoder_layers=2)


def _tokens(seed, shape, low=2, high=128):
  return jax.random.randint(jax.random.PRNGKey(seed), shape, low, high)


@pytest.fixture(scope="module")
def tiny_params():
  enc, dec = _tokens(0, (2, 7)), _tokens(1, (2, 5))
  return nn.unbox(T5(TINY).init(jax.random.PRNGKey(2), enc, dec)["params"])


def test_logits_shape_and_padding_invariance(tiny_params):
  model = T5(TINY)
  enc, dec = _tokens(0, (2, 7)), _tokens(1, (2, 5))
  logits = model.apply({"params": tiny_params}, enc, dec)
  assert logits.shape == (2, 5, TINY.vocab_size)
  assert logits.dtype == jnp.float32
  # Extra encoder padding (id 0) must not change anything.
  padded = jnp.pad(enc, ((0, 0), (0, 3)))
  logits_padded = model.apply({"params": tiny_params}, padded, dec)
  np.testing.assert_allclose(logits, logits_padded, atol=1e-5)


def test_decoder_is_causal(tiny_params):
  model = T5(TINY)
  enc, dec = _tokens(0, (2, 7)), _tokens(1, (2, 5))
  changed = dec.at[:, 3].set(5)
  a = model.apply({"params": tiny_params}, enc, dec)
  b = model.apply({"params": tiny_params}, enc, changed)
  np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-6)
  assert np.abs(np.asarray(a[:, 3:] - b[:, 3:])).max() > 1e-4


def test_cached_decoding_matches_full_forward(tiny_params):
  model = T5(TINY)
  enc, dec = _tokens(0, (2, 7)), _tokens(1, (2, 6))
  full = model.apply({"params": tiny_params}, enc, dec)
  encoded = model.apply({"params": tiny_params}, enc, method=T5.encode)
  cache = init_decode_cache(model, tiny_params, encoded, enc, 6)
  steps = []
  for i in range(6):
    logits, mutated = model.apply(
        {"params": tiny_params, "cache": cache}, encoded, enc,
        dec[:, i:i + 1], decode=True, max_decode_length=6, method=T5.decode,
        mutable=["cache"])
    cache = mutated["cache"]
    steps.append(logits[:, 0])
  np.testing.assert_allclose(np.stack(steps, 1), full, atol=1e-5)


def test_dropout_is_active_only_when_enabled():
  cfg = T5Config(**{**TINY.__dict__, "dropout_rate": 0.5})
  model = T5(cfg)
  enc, dec = _tokens(0, (2, 7)), _tokens(1, (2, 5))
  params = nn.unbox(model.init(jax.random.PRNGKey(0), enc, dec)["params"])
  det = model.apply({"params": params}, enc, dec)
  np.testing.assert_allclose(det, model.apply({"params": params}, enc, dec))
  drop = model.apply({"params": params}, enc, dec, enable_dropout=True,
                     rngs={"dropout": jax.random.PRNGKey(1)})
  assert np.abs(np.asarray(drop - det)).max() > 1e-3


def test_scorer_returns_one_scalar_per_example():
  model = T5Scorer(TINY)
  enc = _tokens(0, (3, 9))
  params = nn.unbox(model.init(jax.random.PRNGKey(0), enc)["params"])
  assert "score_head" in params and "logits_dense" not in params
  scores = model.apply({"params": params}, enc)
  assert scores.shape == (3,)
  assert np.all(np.isfinite(np.asarray(scores)))


def test_shift_right():
  np.testing.assert_array_equal(shift_right(jnp.array([[5, 6, 1]])),
                                [[0, 5, 6]])


@pytest.mark.parametrize("bad", [dict(d_model=0), dict(dropout_rate=1.0),
                                 dict(remat_policy="sometimes"),
                                 dict(dtype="float13")])
def test_config_validation(bad):
  with pytest.raises(ValueError, match="T5Config"):
    T5Config(**bad)


def test_unknown_lm_head_backward_is_a_config_error_naming_the_choices():
  with pytest.raises(ConfigError, match=r"T5Config\.lm_head_backward.*"
                     r"'xla', 'cpu_barrier'.*'tpu_fast'"):
    T5Config(lm_head_backward="tpu_fast")


def _backwards_agree(params, field, choice, enc, dec, targets):
  """Loss and gradients with T5Config.<field> = choice equal 'xla''s.

  Returns the 'xla' gradients.
  """

  def loss_and_grads(backward):
    model = T5(T5Config(**{**TINY.__dict__, field: backward}))

    def loss(params):
      logp = jax.nn.log_softmax(model.apply({"params": params}, enc, dec))
      return -jnp.take_along_axis(logp, targets[..., None], -1).mean()

    return jax.jit(jax.value_and_grad(loss))(params)

  loss_xla, grads_xla = loss_and_grads("xla")
  loss_other, grads_other = loss_and_grads(choice)
  np.testing.assert_allclose(loss_other, loss_xla, rtol=1e-6)
  assert jax.tree.structure(grads_other) == jax.tree.structure(grads_xla)
  for a, b in zip(jax.tree.leaves(grads_other), jax.tree.leaves(grads_xla)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  return grads_xla


def test_position_bias_backwards_give_equal_loss_and_gradients(tiny_params):
  """'batch_dot' (custom VJP) and 'xla' (autodiff), with padded prompts."""
  enc = _tokens(0, (3, 7)).at[1, 4:].set(0)
  dec, targets = _tokens(1, (3, 5)), _tokens(3, (3, 5))
  grads = _backwards_agree(tiny_params, "position_bias_backward", "batch_dot",
                           enc, dec, targets)
  bias = np.asarray(grads["encoder"]["relpos_bias"]["rel_embedding"])
  assert np.abs(bias).max() > 1e-4  # the encoder's bias gradient is exercised


def test_row_bias_backward_is_the_sum_over_the_batch():
  shared = jax.random.normal(jax.random.key(0), (1, 2, 3, 4))
  rows = jax.random.normal(jax.random.key(1), (5, 1, 1, 4))
  weights = jax.random.normal(jax.random.key(2), (5, 2, 3, 4))
  for add in (layers.add_row_bias, layers.add_row_bias_batch_dot):
    d_shared, d_rows = jax.grad(lambda s, r: jnp.sum(add(s, r) * weights),
                                (0, 1))(shared, rows)
    np.testing.assert_allclose(d_shared, weights.sum(0, keepdims=True),
                               rtol=1e-6)
    np.testing.assert_allclose(d_rows, weights.sum((1, 2), keepdims=True),
                               rtol=1e-6)


def test_lm_head_backwards_give_equal_loss_and_gradients(tiny_params):
  """'cpu_barrier' (custom VJP) and 'xla' (autodiff): same values."""
  enc, dec = _tokens(0, (2, 7)), _tokens(1, (2, 5))
  targets = _tokens(3, (2, 5))
  grads = _backwards_agree(tiny_params, "lm_head_backward", "cpu_barrier",
                           enc, dec, targets)
  head = np.asarray(grads["logits_dense"]["kernel"])
  assert np.abs(head).max() > 1e-3  # the LM head's gradient is exercised


# Published T5 1.1 sizes (Hugging Face google/t5-v1_1-*: parameter counts).
PUBLISHED = {
    "small": ((512, 6, 1024, 8), 77e6),
    "base": ((768, 12, 2048, 12), 248e6),
    "large": ((1024, 16, 2816, 24), 783e6),
    "xl": ((2048, 32, 5120, 24), 2.85e9),
    "xxl": ((4096, 64, 10240, 24), 11.1e9),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_published_sizes(name):
  (d, h, f, layers), published = PUBLISHED[name]
  cfg = T5Config(d_model=d, num_heads=h, d_ff=f, num_encoder_layers=layers,
                 num_decoder_layers=layers)
  count = model_info.count_params(cfg)
  assert abs(count - published) / published < 0.01, (name, count)


def test_remat_gives_identical_logits(tiny_params):
  enc, dec = _tokens(0, (2, 7)), _tokens(1, (2, 5))
  base = T5(TINY).apply({"params": tiny_params}, enc, dec)
  for policy in ("full", "dots"):
    cfg = T5Config(**{**TINY.__dict__, "remat_policy": policy})
    out = T5(cfg).apply({"params": tiny_params}, enc, dec)
    np.testing.assert_allclose(out, base, atol=1e-6)


def test_matches_hugging_face_pytorch_t5():
  torch = pytest.importorskip("torch", reason="torch is in the test extra")
  transformers = pytest.importorskip("transformers")
  hf_cfg = transformers.T5Config(
      vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2,
      num_decoder_layers=3, num_heads=4, relative_attention_num_buckets=32,
      relative_attention_max_distance=128, dropout_rate=0.0,
      feed_forward_proj="gated-gelu", tie_word_embeddings=False,
      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
  # transformers>=5 always ties lm_head to the shared embedding (and skips
  # T5 1.1's missing output scaling through scale_decoder_outputs=False), so
  # the head is compared through our untied kernel set to that embedding.
  torch.manual_seed(0)
  hf = transformers.T5ForConditionalGeneration(hf_cfg).eval()
  # Random weights everywhere (HF zero-inits nothing here, but make sure the
  # relative-position tables and norms are non-trivial).
  with torch.no_grad():
    for p in hf.parameters():
      p.normal_(0.0, 0.3)
  state = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
  cfg = hf_conversion.config_from_hf(hf_cfg.to_dict())
  params = hf_conversion.params_from_hf_state_dict(state, cfg)
  enc = np.array([[5, 17, 99, 3, 42, 1, 0, 0], [7, 8, 9, 10, 11, 12, 13, 1]])
  dec = np.array([[0, 4, 5, 6, 7, 8], [0, 9, 10, 11, 12, 13]])
  with torch.no_grad():
    ref = hf(input_ids=torch.tensor(enc),
             attention_mask=torch.tensor(enc > 0),
             decoder_input_ids=torch.tensor(dec)).logits.numpy()
  ours = T5(cfg).apply({"params": params}, jnp.asarray(enc), jnp.asarray(dec))
  np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-4, rtol=0)


def test_hf_conversion_rejects_mismatched_checkpoints():
  cfg = T5Config(vocab_size=16, d_model=8, num_heads=2, d_kv=4, d_ff=8,
                 num_encoder_layers=1, num_decoder_layers=1)
  with pytest.raises(KeyError, match="relative_attention_bias"):
    hf_conversion.params_from_hf_state_dict({}, cfg)
  with pytest.raises(ValueError, match="feed_forward_proj"):
    hf_conversion.config_from_hf({"feed_forward_proj": "relu"})
  with pytest.raises(ValueError, match="original-T5"):
    hf_conversion.config_from_hf({"feed_forward_proj": "gated-gelu",
                                  "tie_word_embeddings": True})


def _stack_layers(params, num_enc, num_dec):
  """Unrolled params (layers_i) -> scanned layout (layers/layer, axis 0)."""
  out = jax.tree.map(lambda x: x, params)
  for stack, n in (("encoder", num_enc), ("decoder", num_dec)):
    per_layer = [out[stack].pop(f"layers_{i}") for i in range(n)]
    out[stack]["layers"] = {"layer": jax.tree.map(
        lambda *xs: jnp.stack(xs), *per_layer)}
  return out


@pytest.mark.parametrize("remat", ["none", "full"])
def test_scanned_layers_match_unrolled(tiny_params, remat):
  cfg = T5Config(**{**TINY.__dict__, "scan_layers": True,
                    "remat_policy": remat})
  model = T5(cfg)
  enc, dec = _tokens(0, (2, 7)), _tokens(1, (2, 5))
  scanned_init = nn.unbox(model.init(jax.random.PRNGKey(0), enc, dec)
                          ["params"])
  stacked = _stack_layers(tiny_params, 2, 2)
  assert (jax.tree.structure(scanned_init) == jax.tree.structure(stacked))
  expected = T5(TINY).apply({"params": tiny_params}, enc, dec)
  np.testing.assert_allclose(model.apply({"params": stacked}, enc, dec),
                             expected, atol=1e-5)
  # Cached decoding through the scanned stack.
  encoded = model.apply({"params": stacked}, enc, method=T5.encode)
  cache = init_decode_cache(model, stacked, encoded, enc, 5)
  steps = []
  for i in range(5):
    logits, mutated = model.apply(
        {"params": stacked, "cache": cache}, encoded, enc, dec[:, i:i + 1],
        decode=True, max_decode_length=5, method=T5.decode,
        mutable=["cache"])
    cache = mutated["cache"]
    steps.append(logits[:, 0])
  np.testing.assert_allclose(np.stack(steps, 1), expected, atol=1e-5)


def test_scanned_parameters_carry_the_layers_axis():
  cfg = T5Config(**{**TINY.__dict__, "scan_layers": True})
  abstract = model_info.abstract_params(cfg)
  spec = nn.get_partition_spec(abstract)
  wi = spec["encoder"]["layers"]["layer"]["mlp"]["wi_0"]["kernel"]
  assert tuple(wi) == ("layers", "embed", "mlp")
  assert model_info.count_params(cfg) == model_info.count_params(TINY)
