"""A finite-answer world's word vocabulary, and each response's outcome.

Ids: 0 pad, 1 EOS (the T5 convention of `nlhf_jax.data.iterators`), 2 an
unknown word, then the world's words (prompt and answer texts split on
spaces, and the scorers' marker words) in sorted order. An answer is its
words' ids followed by EOS; a sampled response has the outcome k when its
tokens up to and including the first EOS are answer k's, and the outcome
"other" (K) otherwise (no EOS, another sequence, a pad id before EOS).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nlhf_jax.data import iterators
from nlhf_jax.finite_world import population

PAD_ID, EOS_ID, UNKNOWN_ID = 0, iterators.EOS_ID, 2
FIRST_WORD_ID = 3
# The words of the scorers' default layout markers (" Summary 1:",
# " Summary 2:", " Summary:"), so a learned judge can be trained here.
MARKER_WORDS = ("Summary", "1:", "2:", "Summary:")


class WordVocabulary:
  """The words of a world, as ids (module docstring)."""

  def __init__(self, world: population.World):
    words = set(MARKER_WORDS)
    for text in [p.text for p in world.prompts] + list(world.answers):
      words.update(text.split())
    self.words = tuple(sorted(words))
    self._ids = {w: FIRST_WORD_ID + i for i, w in enumerate(self.words)}

  @property
  def vocab_size(self) -> int:
    """The number of ids (the model's vocab_size must be at least this)."""
    return FIRST_WORD_ID + len(self.words)

  def encode(self, text: str) -> list[int]:
    """Word ids of `text` (no EOS); unknown words map to UNKNOWN_ID."""
    return [self._ids.get(w, UNKNOWN_ID) for w in text.split()]

  def decode(self, ids: Sequence[int]) -> str:
    """Text of ids up to the first EOS (pads skipped)."""
    out = []
    for i in ids:
      i = int(i)
      if i == EOS_ID:
        break
      if i != PAD_ID:
        out.append("<unk>" if i == UNKNOWN_ID else
                   self.words[i - FIRST_WORD_ID])
    return " ".join(out)


def answer_rows(vocabulary: WordVocabulary, answers: Sequence[str],
                length: int) -> np.ndarray:
  """int32 [K, length]: each answer's ids, EOS, then pads.

  Raises:
    ValueError: an answer (with its EOS) does not fit in `length` tokens.
  """
  rows = [vocabulary.encode(a) for a in answers]
  longest = max(len(r) for r in rows) + 1
  if longest > length:
    raise ValueError(f"answers need {longest} tokens with EOS but responses "
                     f"have {length}: raise the response / target length")
  return iterators.pad_token_rows(rows, length)


def canonical_responses(tokens_bl: jax.Array) -> jax.Array:
  """Tokens with every position after the first EOS set to pad, [b, L]."""
  is_eos = tokens_bl == EOS_ID
  after = (jnp.cumsum(is_eos, axis=-1) - is_eos) > 0
  return jnp.where(after, PAD_ID, tokens_bl)


def outcomes(tokens_bl: jax.Array, answers_kl: np.ndarray) -> jax.Array:
  """The outcome of each response, int32 [b] in [0, K] (K: "other").

  Args:
    tokens_bl: sampled responses [b, L].
    answers_kl: `answer_rows(..., length)` with length <= L.
  """
  length = tokens_bl.shape[-1]
  if answers_kl.shape[-1] > length:
    raise ValueError(f"responses of {length} tokens cannot hold the answers "
                     f"({answers_kl.shape[-1]} tokens)")
  answers = np.pad(answers_kl, ((0, 0), (0, length - answers_kl.shape[-1])))
  canonical = canonical_responses(tokens_bl)
  match_bk = jnp.all(canonical[:, None, :] == jnp.asarray(answers)[None],
                     axis=-1)
  num_answers = answers.shape[0]
  return jnp.where(jnp.any(match_bk, -1), jnp.argmax(match_bk, -1),
                   num_answers).astype(jnp.int32)


def row_index(rows_bl: jax.Array, table_xl: np.ndarray) -> jax.Array:
  """For each row, the index of the equal row of `table`, or -1, int32 [b]."""
  match_bx = jnp.all(rows_bl[:, None, :] == jnp.asarray(table_xl)[None],
                     axis=-1)
  return jnp.where(jnp.any(match_bx, -1), jnp.argmax(match_bx, -1),
                   -1).astype(jnp.int32)
