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


@dataclasses.dataclass(frozen=True)
class FiniteWorldComparisons(iterators.InMemorySplits):
  """Comparisons labelled by the world's voters, for a learned judge.

  Each row draws a prompt uniformly, a pair of distinct offered answers
  uniformly (in random order) and one voter: label = 1 with probability
  P*_x(a ≻ b). The features are `PreferenceJsonlSource`'s (prompt,
  decoder_target_tokens_a/_b, label, confidence = −1, p_star), so
  `gin_configs/runs/preference_model.gin` and `reward_model.gin` train on
  it unchanged. The reward model converges to the Bradley–Terry fit on
  these pairs, the exact judge's reward (`judge.exact_reward`).

  Attributes:
    world: the finite-answer world.
    input_length, target_length: as `FiniteWorldSource` (same checks).
    num_train, num_eval: comparisons per split ('train', 'valid').
    seed: seed of the draws (train and valid use [seed, 0] and [seed, 1]).
  """

  world: population.World
  input_length: int = 16
  target_length: int = 4
  num_train: int = 4096
  num_eval: int = 512
  seed: int = 0

  eval_split = "valid"

  def __post_init__(self):
    for name in ("input_length", "target_length", "num_train", "num_eval"):
      errors.check_positive(self, name, getattr(self, name), integer=True)
    errors.check_non_negative(self, "seed", self.seed, integer=True)
    self.answers_source  # pylint: disable=pointless-statement  # Checks.

  @functools.cached_property
  def answers_source(self) -> FiniteWorldSource:
    """The same world's SFT source (its vocabulary, prompts and answers)."""
    return FiniteWorldSource(self.world, self.input_length,
                             self.target_length)

  @property
  def vocab_size(self) -> int:
    return self.answers_source.vocab_size

  def encode(self, text: str) -> list[int]:
    return self.answers_source.encode(text)

  def arrays(self, split: str) -> iterators.Batch:
    """The split's comparisons ('train' or 'valid'), drawn once."""
    if split not in ("train", self.eval_split):
      raise ValueError(f"FiniteWorldComparisons has splits 'train' and "
                       f"{self.eval_split!r}, not {split!r}")
    n = self.num_train if split == "train" else self.num_eval
    rng = np.random.default_rng([self.seed, 0 if split == "train" else 1])
    offered = self.world.offered_mask()[:, :-1]
    prefs = self.world.preference()
    x = rng.integers(len(self.world.prompts), size=n)
    a, b = np.empty(n, int), np.empty(n, int)
    for i, prompt in enumerate(x):
      a[i], b[i] = rng.choice(np.flatnonzero(offered[prompt]), 2,
                              replace=False)
    p_star = prefs[x, a, b]
    source = self.answers_source
    answers = source.answer_rows()
    return {"encoder_input_tokens": source.prompt_rows()[x],
            "decoder_target_tokens_a": answers[a],
            "decoder_target_tokens_b": answers[b],
            "label": (rng.random(n) < p_star).astype(np.int32),
            "confidence": np.full(n, -1, np.int32),
            "p_star": p_star.astype(np.float32)}
