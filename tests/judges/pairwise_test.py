"""The learned preference-model judge scores the same in row chunks."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from nlhf_jax.judges import pairwise
from nlhf_jax.models import init as model_init
from nlhf_jax.models import preference as pm_lib
from nlhf_jax.models import t5

CFG = t5.T5Config(vocab_size=64, d_model=16, num_heads=2, d_kv=8, d_ff=32,
                  num_encoder_layers=1, num_decoder_layers=1)
LAYOUT = pm_lib.PairLayout(length=24, first_marker=(5,), second_marker=(6,))


@pytest.mark.parametrize("row_chunk", [2, 4, 7])
def test_row_chunks_give_the_values_of_one_pass(row_chunk):
  """7 rows: chunks of 2 and 4 pad the last chunk, 7 is one chunk."""
  scorer = t5.T5Scorer(CFG)
  params = nn.unbox(model_init.scorer_init_fn(scorer, 0)())
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  prompts = jax.random.randint(keys[0], (7, 8), 2, 64)
  first = jax.random.randint(keys[1], (7, 6), 2, 64)
  second = jax.random.randint(keys[2], (7, 6), 2, 64)
  whole = pairwise.PreferenceModelJudge(scorer, LAYOUT)
  chunked = pairwise.PreferenceModelJudge(scorer, LAYOUT,
                                          row_chunk=row_chunk)
  expected = jax.jit(whole)(params, prompts, first, second)
  got = jax.jit(chunked)(params, prompts, first, second)
  assert got.shape == (7,)
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected),
                             atol=1e-6)
  assert np.ptp(np.asarray(expected)) > 0  # The rows really differ.
