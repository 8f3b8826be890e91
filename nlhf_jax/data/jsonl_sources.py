"""TL;DR batches straight from the OpenAI files, without TensorFlow.

Reads the raw `summarize-from-feedback` layout (the synthetic world writes
the same files)::

  DATA_DIR/tldr_3_filtered/{train,valid,test}.jsonl
  DATA_DIR/comparisons/*.json      (JSON lines; split train/valid1/valid2)

line by line with `tldr_files`, the parser of the TFDS builders, so both
paths read the same rows: malformed lines and CNN/DM comparisons are
skipped, and the skips are logged with their reason and `file:line` (e.g.
`comparisons/batch3.json:51: not JSON: ...`); a split without a valid row is
a ValueError with those counts. Rows are tokenised with a SentencePiece
model (pad 0, EOS 1, as written by `python -m nlhf_jax.data.vocab`; loaded
by `vocab.sentencepiece_processor`) and served as in-memory
`ArrayIterator`s in the feature layouts of the seqio pipeline (`data.tasks`
+ `data.feature_converters`): prompts are the canonical TL;DR prompt cut by
OpenAI's rule (`data.prompts`) to `input_length - 1` tokens, then EOS;
targets are `" " + summary` + EOS, cut to `target_length`.

This is the CPU / no-TensorFlow path (tests, the synthetic world, small
real subsets); the TFDS + seqio tasks (`seqio_source`) are the scalable
path.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

from absl import logging
import numpy as np

from nlhf_jax import errors
from nlhf_jax.data import iterators as di
from nlhf_jax.data import prompts
from nlhf_jax.data import tldr_files
from nlhf_jax.data import vocab as vocab_lib

SFT_SPLITS = ("train", "valid", "test")
COMPARISON_SPLITS = tldr_files.COMPARISON_SPLITS
# SFT split (the file's name) -> its TFDS split (`tldr_files.FILTERED_FILES`).
TFDS_SFT_SPLIT = {"train": "train", "valid": "validation", "test": "test"}


def _checked(examples: list[dict[str, Any]],
             tallies: dict[str, tldr_files.SplitTally], split: str,
             what: str) -> list[dict[str, Any]]:
  """Logs the skipped lines of `split` (and unassigned ones); no row: error."""
  for owner in (split, tldr_files.UNASSIGNED):
    tally = tallies.get(owner)
    if tally is not None and tally.skipped:
      logging.warning(
          "%s (%s): skipped %d of %d lines %s, e.g. %s", what, owner,
          sum(tally.skipped.values()), tally.lines, dict(tally.skipped),
          "; ".join(e for shown in tally.examples.values() for e in shown))
  if not examples:
    skipped = {k: t.as_dict() for k, t in tallies.items() if t.lines}
    raise errors.DataError(f"No valid {what} of split {split!r}; lines per "
                           f"split: {skipped}.")
  return examples


def sft_examples(data_dir: str, split: str) -> list[dict[str, str]]:
  """The valid rows of `tldr_3_filtered/{split}.jsonl`, in file order.

  Each row has the string fields id, subreddit, title, post, summary
  (`tldr_files.parse_filtered_line`), exactly as the `tldr_filtered` TFDS
  split `TFDS_SFT_SPLIT[split]` stores them.
  """
  if split not in SFT_SPLITS:
    raise ValueError(f"SFT split must be one of {SFT_SPLITS}, got {split!r}.")
  path = os.path.join(data_dir, tldr_files.FILTERED_DIR, f"{split}.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found.")
  tfds_split = TFDS_SFT_SPLIT[split]
  examples, tallies = tldr_files.read_split(
      tldr_files.filtered_rows(data_dir, tfds_split), tfds_split)
  return _checked(examples, tallies, tfds_split,
                  f"TL;DR posts in {path}")


def comparison_examples(data_dir: str, split: str) -> list[dict[str, Any]]:
  """The valid TL;DR comparisons of `split` in `comparisons/*.json`.

  In file order (files sorted), with the `tldr_comparisons` features
  (`tldr_files.parse_comparison`), exactly as that TFDS split stores them.
  """
  if split not in COMPARISON_SPLITS:
    raise ValueError(f"Comparison split must be one of {COMPARISON_SPLITS}, "
                     f"got {split!r}.")
  if not tldr_files.comparison_files(data_dir):
    raise FileNotFoundError(f"No comparisons/*.json under {data_dir}.")
  examples, tallies = tldr_files.read_split(
      tldr_files.comparison_rows(data_dir), split)
  return _checked(examples, tallies, split,
                  f"TL;DR comparisons in {data_dir}")


@dataclasses.dataclass(frozen=True)
class _TldrFiles(di.InMemorySplits):
  """Shared settings: where the files are and how to tokenise them.

  Attributes:
    data_dir: directory with `tldr_3_filtered/` and/or `comparisons/`.
    vocabulary: path of a SentencePiece `.model` (pad 0, EOS 1).
    input_length: prompt length in tokens, EOS included.
    target_length: summary length in tokens, EOS included.
    max_examples: keep at most this many rows per split (0: all).
  """

  data_dir: str
  vocabulary: str
  input_length: int = 512
  target_length: int = 64
  max_examples: int = 0

  def __post_init__(self):
    errors.check_path_exists(self, "data_dir", self.data_dir, kind="dir",
                             hint="gin macro DATA_DIR")
    errors.check_path_exists(
        self, "vocabulary", self.vocabulary, kind="file",
        hint="gin macro VOCABULARY: a SentencePiece .model")
    errors.check_at_least(self, "input_length", self.input_length, 8,
                          integer=True)
    errors.check_at_least(self, "target_length", self.target_length, 2,
                          integer=True)
    errors.check_non_negative(self, "max_examples", self.max_examples,
                              integer=True, hint="0: all rows")
    # The subclasses' eval_split (validated here, with the shared fields).
    if isinstance(self, SftJsonlSource):
      errors.check_choice(self, "eval_split", self.eval_split, SFT_SPLITS)
    elif isinstance(self, PreferenceJsonlSource):
      errors.check_choice(self, "eval_split", self.eval_split,
                          COMPARISON_SPLITS)

  @property
  def vocab_size(self) -> int:
    return self._processor().get_piece_size()

  def encode(self, text: str) -> list[int]:
    """Token ids of `text` (no EOS)."""
    return list(self._processor().encode(text))

  def _processor(self):
    return vocab_lib.sentencepiece_processor(self.vocabulary)

  def prompt_tokens(self, subreddit: str, title: str, post: str) -> list[int]:
    """Canonical prompt cut by OpenAI's rule to input_length - 1 tokens."""
    text = prompts.build_prompt(
        subreddit, title, post, num_tokens=lambda s: len(self.encode(s)),
        max_tokens=self.input_length - 1, strict=False)
    return self.encode(text)

  def arrays(self, split: str) -> di.Batch:
    """The whole split in this source's feature layout (cached)."""
    return _arrays(self, split)

  def _read(self, split: str) -> list[dict[str, Any]]:
    """The split's valid rows (`tldr_files` examples)."""
    raise NotImplementedError

  def _features(self, rows: list[dict[str, Any]]) -> di.Batch:
    raise NotImplementedError

  def _prompt_features(self, rows: list[dict[str, Any]]) -> np.ndarray:
    """encoder_input_tokens [n, input_length] of the rows' prompts."""
    return di.pad_token_rows(
        [self.prompt_tokens(r["subreddit"], r["title"], r["post"])
         for r in rows], self.input_length)


@functools.lru_cache(maxsize=16)
def _arrays(source: _TldrFiles, split: str) -> di.Batch:
  # pylint: disable=protected-access
  rows = source._read(split)
  if source.max_examples:
    rows = rows[:source.max_examples]
  return source._features(rows)


@dataclasses.dataclass(frozen=True)
class SftJsonlSource(_TldrFiles):
  """SFT batches from `tldr_3_filtered/{split}.jsonl` (the SFT layout).

  Attributes:
    eval_split: split used by `eval_iterator` ('valid' or 'test').
  """

  eval_split: str = "valid"

  def _read(self, split: str) -> list[dict[str, Any]]:
    return sft_examples(self.data_dir, split)

  def _features(self, rows: list[dict[str, Any]]) -> di.Batch:
    targets = [self.encode(prompts.format_target(r["summary"])) for r in rows]
    return di.seq2seq_features(
        self._prompt_features(rows),
        di.pad_token_rows(targets, self.target_length))


@dataclasses.dataclass(frozen=True)
class PreferenceJsonlSource(_TldrFiles):
  """Comparison batches from `comparisons/*.json`.

  Features: encoder_input_tokens [b, input_length] (prompt),
  decoder_target_tokens_a/_b [b, target_length] (the two summaries),
  label [b] (1 if summary a was chosen), confidence [b] (-1 if missing),
  and, with `with_p_star`, p_star [b] = P*(a ≻ b | x) of the synthetic
  world's annotator population (synthetic data only).

  Attributes:
    eval_split: split used by `eval_iterator` ('valid1' or 'valid2').
    with_p_star: add the synthetic world's exact P* to every row.
  """

  eval_split: str = "valid1"
  with_p_star: bool = False

  def _read(self, split: str) -> list[dict[str, Any]]:
    return comparison_examples(self.data_dir, split)

  def _features(self, rows: list[dict[str, Any]]) -> di.Batch:
    out = {"encoder_input_tokens": self._prompt_features(rows)}
    for index, name in ((0, "a"), (1, "b")):
      out[f"decoder_target_tokens_{name}"] = di.pad_token_rows(
          [self.encode(r[f"summary_{index}"]) for r in rows],
          self.target_length)
    out["label"] = np.array([1 - r["choice"] for r in rows], np.int32)
    out["confidence"] = np.array([r["confidence"] for r in rows], np.int32)
    if self.with_p_star:
      out["p_star"] = _p_star(rows)
    return out


def _p_star(rows: list[dict[str, Any]]) -> np.ndarray:
  from nlhf_jax.data import annotators  # pylint: disable=g-import-not-at-top
  contexts = [annotators.canonical_prompt(r["subreddit"], r["title"],
                                          r["post"]) for r in rows]
  p_star = annotators.PopulationPreference()
  return p_star(contexts, [r["summary_0"] for r in rows],
                [r["summary_1"] for r in rows]).astype(np.float32)
