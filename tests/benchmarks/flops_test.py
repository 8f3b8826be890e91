"""The analytic T5 FLOP formulas of benchmarks/flops.py against XLA's count.

XLA's cost analysis of the lowered (unoptimised) program counts every op:
the matmuls our formulas count plus elementwise work (norms, softmax, GELU,
the loss), so the analytic figure must be slightly below it. Lowering does
not compile, so these tests are fast.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from benchmarks import flops
from benchmarks import nash_md_benchmark
from benchmarks import peer_nash_md
from nlhf_jax.models import t5

CONFIG = t5.T5Config(vocab_size=2048, d_model=128, num_heads=4, d_kv=32,
                     d_ff=256, num_encoder_layers=2, num_decoder_layers=3)


def _xla_flops(fn, *args):
  return jax.jit(fn).lower(*args).cost_analysis()["flops"]


def _abstract_params(model, *inputs):
  return jax.eval_shape(
      lambda: nn.unbox(model.init(jax.random.PRNGKey(0), *inputs)["params"]))


@pytest.mark.parametrize("batch,enc_len,dec_len", [(2, 24, 8), (3, 16, 20)])
def test_lm_forward_and_train_flops(batch, enc_len, dec_len):
  model = t5.T5(CONFIG)
  x = jnp.ones((batch, enc_len), jnp.int32)
  y = jnp.ones((batch, dec_len), jnp.int32)
  params = _abstract_params(model, x, y)
  forward = _xla_flops(lambda p: model.apply({"params": p}, x, y), params)
  analytic = batch * flops.lm_forward_flops(CONFIG, enc_len, dec_len)
  assert 0.97 * forward < analytic < forward

  def loss(p):
    return jnp.sum(jnp.square(model.apply({"params": p}, x, y)))

  train = _xla_flops(jax.grad(loss), params)
  analytic_train = flops.lm_train_flops(CONFIG, batch, enc_len, dec_len)
  assert analytic_train == 3 * analytic
  assert 0.97 * train < analytic_train < train


def test_scorer_forward_flops():
  model = t5.T5Scorer(CONFIG)
  x = jnp.ones((4, 40), jnp.int32)
  params = _abstract_params(model, x)
  forward = _xla_flops(lambda p: model.apply({"params": p}, x), params)
  analytic = 4 * flops.scorer_forward_flops(CONFIG, 40)
  assert 0.97 * forward < analytic < forward
  assert flops.scorer_train_flops(CONFIG, 4, 40) == 3 * analytic


def test_decoder_flops_grow_with_encoder_length_through_cross_attention():
  # Only cross-attention K/V projections and scores depend on t.
  a = CONFIG.num_heads * CONFIG.d_kv
  delta = (flops.decoder_forward_flops(CONFIG, 11, 5) -
           flops.decoder_forward_flops(CONFIG, 10, 5))
  assert delta == CONFIG.num_decoder_layers * (4 * CONFIG.d_model * a +
                                               4 * 5 * a)


def test_decode_flops_per_token_is_the_one_position_forward_without_attention():
  # One decoder position (q = 1) of the teacher-forced count, minus the
  # terms the per-token decode count leaves out: encoder, cross K/V
  # projections and attention over keys.
  t = 7
  a = CONFIG.num_heads * CONFIG.d_kv
  one_position = (flops.lm_forward_flops(CONFIG, t, 1) -
                  flops.encoder_forward_flops(CONFIG, t))
  left_out = CONFIG.num_decoder_layers * (
      4 * a + 4 * t * CONFIG.d_model * a + 4 * t * a)
  assert flops.decode_flops_per_token(CONFIG) == one_position - left_out


def test_gpt2_decode_flops_per_token_of_the_peer():
  # d 256, 4 layers, vocab 32128: 4·24·256² + 2·256·32128.
  assert flops.gpt2_decode_flops_per_token(256, 4, 32128) == 22_740_992


def test_the_flops_matched_size_is_within_ten_percent_of_the_peer():
  peer = peer_nash_md.PEER_MODEL
  ratio = (flops.decode_flops_per_token(nash_md_benchmark.FLOPS_MATCHED) /
           flops.gpt2_decode_flops_per_token(peer["d_model"], peer["layers"],
                                             peer["vocab"]))
  assert 0.9 <= ratio <= 1.1, ratio
  # The parameter-matched size is not FLOP-matched (why both exist).
  assert flops.decode_flops_per_token(nash_md_benchmark.MATCHED) < 0.6 * (
      flops.decode_flops_per_token(nash_md_benchmark.FLOPS_MATCHED))
