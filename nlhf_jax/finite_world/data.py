"""A finite-answer world as a `DataSource`: SFT rows and teacher-forcing rows.

Splits (SFT features of `nlhf_jax.data.iterators`, word ids of
`tokens.WordVocabulary`):

  train     SFT rows: at prompt x, its j-th offered answer (of |S_x|) in
            copies × (1 + (j + x) mod |S_x|) rows, so the reference μ
            depends on the prompt, as a real SFT policy does (with equal
            shares at every prompt a tiny T5 learns to ignore the prompt,
            and RLHF then collapses onto the prompt-averaged reward
            maximiser: README, "Finite-answer worlds"); `rotate_shares=False`
            gives equal shares. The online jobs read only the prompts.
  outcomes  one row per (prompt x, answer k) over every answer (offered or
            not), with `prompt_index` and `answer_index`: teacher forcing
            them gives a policy's exact outcome distribution
            (`evaluation`). The evaluation split.

Gin: `data = @finite_world.data.FiniteWorldSource()` with
`FiniteWorldSource.world = @population.ready_world()` and
`ready_world.name = "majority"` (or `@population.load_world()` and a path).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from nlhf_jax import errors
from nlhf_jax.data import iterators
from nlhf_jax.finite_world import population
from nlhf_jax.finite_world import tokens

PROMPT_INDEX, ANSWER_INDEX = "prompt_index", "answer_index"


@dataclasses.dataclass(frozen=True)
class FiniteWorldSource(iterators.InMemorySplits):
  """The world's prompts and answers as in-memory splits (module docstring).

  Attributes:
    world: the finite-answer world.
    input_length: prompt tokens (with EOS); a longer prompt is an error.
    target_length: answer tokens (with EOS); a longer answer is an error.
    copies: train rows per (prompt, offered answer) and share.
    rotate_shares: rotate the answers' shares over the prompts (above).
  """

  world: population.World
  input_length: int = 16
  target_length: int = 4
  copies: int = 8
  rotate_shares: bool = True

  eval_split = "outcomes"

  def __post_init__(self):
    if not isinstance(self.world, population.World):
      raise errors.ConfigError(
          "FiniteWorldSource.world must be a population.World (gin: "
          f"@population.ready_world()), got {type(self.world).__name__}")
    for name in ("input_length", "target_length", "copies"):
      errors.check_positive(self, name, getattr(self, name), integer=True)
    longest = max(len(p.text.split()) for p in self.world.prompts) + 1
    if longest > self.input_length:
      raise errors.ConfigError(
          f"FiniteWorldSource.input_length={self.input_length} is shorter "
          f"than the world's longest prompt with EOS ({longest} tokens)")
    try:
      self.answer_rows()
    except ValueError as e:
      raise errors.ConfigError(f"FiniteWorldSource.target_length: {e}"
                               ) from None

  @functools.cached_property
  def words(self) -> tokens.WordVocabulary:
    return tokens.WordVocabulary(self.world)

  @property
  def vocab_size(self) -> int:
    return self.words.vocab_size

  @property
  def vocabulary(self) -> tokens.WordVocabulary:
    """The word vocabulary (host judges decode with it)."""
    return self.words

  def encode(self, text: str) -> list[int]:
    return self.words.encode(text)

  def prompt_rows(self) -> np.ndarray:
    """int32 [X, input_length]: every prompt's ids, EOS, pads."""
    return iterators.pad_token_rows(
        [self.words.encode(p.text) for p in self.world.prompts],
        self.input_length)

  def answer_rows(self) -> np.ndarray:
    """int32 [K, target_length]: every answer's ids, EOS, pads."""
    return tokens.answer_rows(self.words, self.world.answers,
                              self.target_length)

  def arrays(self, split: str) -> iterators.Batch:
    """The whole split as features ('train' or 'outcomes')."""
    prompts, answers = self.prompt_rows(), self.answer_rows()
    offered = self.world.offered_mask()[:, :-1]
    if split == "train":
      x, k = np.nonzero(offered)
      rank = np.cumsum(offered, -1)[x, k] - 1  # k's place among offered.
      num = offered.sum(-1)[x]
      shares = 1 + (rank + x) % num if self.rotate_shares else 1
      x, k = (np.repeat(x, self.copies * shares),
              np.repeat(k, self.copies * shares))
    elif split == self.eval_split:
      x, k = np.nonzero(np.ones_like(offered))
    else:
      raise ValueError(f"FiniteWorldSource has splits 'train' and "
                       f"{self.eval_split!r}, not {split!r}")
    batch = iterators.seq2seq_features(prompts[x], answers[k])
    if split == self.eval_split:
      batch[PROMPT_INDEX] = x.astype(np.int32)
      batch[ANSWER_INDEX] = k.astype(np.int32)
    return batch
