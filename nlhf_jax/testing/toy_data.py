"""A learnable toy task in the SFT feature layout, for trainer tests.

`ToySeq2SeqSource` is a `DataSource` of random token sequences with a
deterministic target (a copy / reverse task), for tests and smoke runs that
need batches but no files. Gin files load it with
`from nlhf_jax.testing import toy_data` and `@toy_data.ToySeq2SeqSource()`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nlhf_jax.data import iterators as di


@dataclasses.dataclass(frozen=True)
class ToySeq2SeqSource(di.InMemorySplits):
  """Random token sequences with a deterministic target: a learnable toy task.

  Inputs are `input_length - 1` random ids in [3, vocab_size); the target is
  the first `target_length - 1` input tokens, reversed when `reverse`.
  Train and eval rows come from disjoint seeds.
  """

  num_examples: int = 256
  num_eval_examples: int = 64
  input_length: int = 16
  target_length: int = 8
  vocab_size: int = 64
  reverse: bool = True
  seed: int = 0

  eval_split = "eval"

  def __post_init__(self):
    if self.vocab_size < 4:
      raise ValueError(f"ToySeq2SeqSource.vocab_size must be >= 4, got "
                       f"{self.vocab_size}.")
    if self.target_length > self.input_length:
      raise ValueError("ToySeq2SeqSource.target_length must be <= "
                       "input_length.")

  def arrays(self, split: str) -> di.Batch:
    """The whole split as SFT features ('train' or 'eval')."""
    n = self.num_examples if split == "train" else self.num_eval_examples
    rng = np.random.default_rng([self.seed, 0 if split == "train" else 1])
    tokens = rng.integers(3, self.vocab_size, (n, self.input_length - 1))
    targets = tokens[:, :self.target_length - 1]
    if self.reverse:
      targets = targets[:, ::-1]
    return di.seq2seq_features(
        di.pad_token_rows(tokens, self.input_length),
        di.pad_token_rows(targets, self.target_length))

  def encode(self, text: str) -> list[int]:
    """Maps characters to ids in [3, vocab_size) (for layout markers)."""
    return [3 + ord(c) % (self.vocab_size - 3) for c in text]
