"""Shared fixtures: a small synthetic TL;DR world and a SentencePiece model."""

import pytest

from nlhf_jax.data import synthetic
from nlhf_jax.data import vocab as vocab_lib
from nlhf_jax.models import t5


@pytest.fixture(scope="session")
def small_model():
  """The smallest T5 1.1-shaped model that learns the synthetic tasks."""
  return t5.T5Config(vocab_size=512, d_model=32, num_heads=2, d_kv=16,
                     d_ff=64, num_encoder_layers=1, num_decoder_layers=1)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
  """(data_dir, vocabulary path): 2000 posts, 4000 comparisons, 512 pieces."""
  out = tmp_path_factory.mktemp("world")
  synthetic.generate(str(out), seed=0, size=2000)
  model = vocab_lib.train_from_data_dir(str(out), str(out / "sp512"), 512)
  return str(out), model
