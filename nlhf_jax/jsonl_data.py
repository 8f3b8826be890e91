"""TL;DR batches straight from the OpenAI files, without TensorFlow.

Reads the raw `summarize-from-feedback` layout (the synthetic world writes
the same files)::

  DATA_DIR/tldr_3_filtered/{train,valid,test}.jsonl
  DATA_DIR/comparisons/batch*.json      (JSON lines; split train/valid1/valid2)

tokenises with a SentencePiece model (pad 0, EOS 1, as written by
`python -m nlhf_jax.data.vocab`) and serves in-memory `ArrayIterator`s in
the feature layouts of the seqio pipeline (`data.tasks` +
`data.feature_converters`): prompts are the canonical TL;DR prompt cut by
OpenAI's rule (`data.prompts`) to `input_length - 1` tokens, then EOS;
targets are `" " + summary` + EOS, cut to `target_length`.

This is the CPU / no-TensorFlow path (tests, the synthetic world, small
real subsets); the TFDS + seqio tasks are the scalable path. Comparisons
whose `info` is not a TL;DR post (e.g. CNN/DM articles) are skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
from typing import Any, Iterable, Optional

import numpy as np

from nlhf_jax import data_iterators as di
from nlhf_jax.data import prompts
from nlhf_jax.errors import ConfigError

SFT_SPLITS = ("train", "valid", "test")
COMPARISON_SPLITS = ("train", "valid1", "valid2")


@functools.lru_cache(maxsize=8)
def _processor(path: str):
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"SentencePiece model {path!r} not found; train one with "
        "`python -m nlhf_jax.data.vocab --jsonl DATA_DIR/tldr_3_filtered/"
        "train.jsonl --out PREFIX --vocab_size N`.")
  proc = spm.SentencePieceProcessor(model_file=path)
  if (proc.pad_id(), proc.eos_id()) != (di.PAD_ID, di.EOS_ID):
    raise ConfigError(f"SentencePiece model {path} has pad id {proc.pad_id()} "
                      f"and EOS id {proc.eos_id()}; pad 0 and EOS 1 are "
                      "required.")
  return proc


def _read_lines(path: str) -> Iterable[dict[str, Any]]:
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if line.strip():
        try:
          yield json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f"{path}:{number}: not JSON ({e}).") from e


@dataclasses.dataclass(frozen=True)
class _TldrFiles:
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
    # Imported here: this file's edits are kept to __post_init__ for now.
    from nlhf_jax import errors  # pylint: disable=g-import-not-at-top
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
    return _processor(self.vocabulary).get_piece_size()

  def encode(self, text: str) -> list[int]:
    """Token ids of `text` (no EOS)."""
    return list(_processor(self.vocabulary).encode(text))

  def prompt_tokens(self, subreddit: str, title: str, post: str) -> list[int]:
    """Canonical prompt cut by OpenAI's rule to input_length - 1 tokens."""
    text = prompts.build_prompt(
        subreddit, title, post, num_tokens=lambda s: len(self.encode(s)),
        max_tokens=self.input_length - 1, strict=False)
    return self.encode(text)

  def _limit(self, rows: list[Any]) -> list[Any]:
    return rows[:self.max_examples] if self.max_examples else rows


@dataclasses.dataclass(frozen=True)
class SftJsonlSource(_TldrFiles):
  """SFT batches from `tldr_3_filtered/{split}.jsonl`.

  Attributes:
    eval_split: split used by `eval_iterator` ('valid' or 'test').
  """

  eval_split: str = "valid"

  def arrays(self, split: str) -> di.Batch:
    """The whole split in the SFT feature layout (cached)."""
    return _sft_arrays(self, split)

  def train_iterator(self, batch_size: int, seed: int, shard_index: int = 0,
                     num_shards: int = 1) -> di.ArrayIterator:
    return di.ArrayIterator(self.arrays("train"), batch_size, seed=seed,
                            shard_index=shard_index, num_shards=num_shards)

  def eval_iterator(self, batch_size: int, shard_index: int = 0,
                    num_shards: int = 1) -> di.ArrayIterator:
    return di.ArrayIterator(self.arrays(self.eval_split), batch_size,
                            repeat=False, shard_index=shard_index,
                            num_shards=num_shards)


@functools.lru_cache(maxsize=16)
def _sft_arrays(source: SftJsonlSource, split: str) -> di.Batch:
  if split not in SFT_SPLITS:
    raise ValueError(f"SFT split must be one of {SFT_SPLITS}, got {split!r}.")
  path = os.path.join(source.data_dir, "tldr_3_filtered", f"{split}.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found.")
  rows = source._limit(list(_read_lines(path)))  # pylint: disable=protected-access
  inputs = [source.prompt_tokens(r["subreddit"], r["title"], r["post"])
            for r in rows]
  targets = [source.encode(prompts.format_target(r["summary"]))
             for r in rows]
  return di.seq2seq_features(
      di.pad_token_rows(inputs, source.input_length),
      di.pad_token_rows(targets, source.target_length))


@dataclasses.dataclass(frozen=True)
class PreferenceJsonlSource(_TldrFiles):
  """Comparison batches from `comparisons/batch*.json`.

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

  def arrays(self, split: str) -> di.Batch:
    """The whole split in the pair feature layout (cached)."""
    return _pair_arrays(self, split)

  def train_iterator(self, batch_size: int, seed: int, shard_index: int = 0,
                     num_shards: int = 1) -> di.ArrayIterator:
    return di.ArrayIterator(self.arrays("train"), batch_size, seed=seed,
                            shard_index=shard_index, num_shards=num_shards)

  def eval_iterator(self, batch_size: int, shard_index: int = 0,
                    num_shards: int = 1) -> di.ArrayIterator:
    return di.ArrayIterator(self.arrays(self.eval_split), batch_size,
                            repeat=False, shard_index=shard_index,
                            num_shards=num_shards)


def _comparison_rows(data_dir: str, split: str) -> list[dict[str, Any]]:
  files = sorted(glob.glob(os.path.join(data_dir, "comparisons",
                                        "batch*.json")))
  if not files:
    raise FileNotFoundError(f"No comparisons/batch*.json under {data_dir}.")
  rows = []
  for path in files:
    for row in _read_lines(path):
      info = row.get("info", {})
      if row.get("split") == split and "post" in info:
        rows.append(row)
  return rows


@functools.lru_cache(maxsize=16)
def _pair_arrays(source: PreferenceJsonlSource, split: str) -> di.Batch:
  if split not in COMPARISON_SPLITS:
    raise ValueError(f"Comparison split must be one of {COMPARISON_SPLITS}, "
                     f"got {split!r}.")
  rows = source._limit(_comparison_rows(source.data_dir, split))  # pylint: disable=protected-access
  if not rows:
    raise ValueError(f"No TL;DR comparisons of split {split!r} in "
                     f"{source.data_dir}.")
  prompts_ = [source.prompt_tokens(r["info"]["subreddit"], r["info"]["title"],
                                   r["info"]["post"]) for r in rows]
  out = {"encoder_input_tokens": di.pad_token_rows(prompts_,
                                                   source.input_length)}
  for index, name in ((0, "a"), (1, "b")):
    out[f"decoder_target_tokens_{name}"] = di.pad_token_rows(
        [source.encode(r["summaries"][index]["text"]) for r in rows],
        source.target_length)
  out["label"] = np.array([1 - int(r["choice"]) for r in rows], np.int32)
  out["confidence"] = np.array(
      [int((r.get("extra") or {}).get("confidence", -1)) for r in rows],
      np.int32)
  if source.with_p_star:
    out["p_star"] = _p_star(rows)
  return out


def _p_star(rows: list[dict[str, Any]]) -> np.ndarray:
  from nlhf_jax.data import annotators  # pylint: disable=g-import-not-at-top
  contexts = [annotators.canonical_prompt(r["info"]["subreddit"],
                                          r["info"]["title"],
                                          r["info"]["post"]) for r in rows]
  judge = annotators.SyntheticJudge()
  return judge(contexts, [r["summaries"][0]["text"] for r in rows],
               [r["summaries"][1]["text"] for r in rows]).astype(np.float32)


def train_sentencepiece(data_dir: str, model_prefix: str, vocab_size: int,
                        max_sentences: Optional[int] = None) -> str:
  """Trains a small unigram SentencePiece model on the TL;DR train texts.

  Pad 0, EOS 1, unk 2, no BOS, byte fallback; whitespace normalised as
  SentencePiece's default (newlines become spaces). For tests and CPU
  runs; `python -m nlhf_jax.data.vocab` is the full-featured trainer.

  Returns:
    Path of the `.model` file.
  """
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  texts = []
  for row in _read_lines(os.path.join(data_dir, "tldr_3_filtered",
                                      "train.jsonl")):
    texts.append(prompts.format_prompt(row["subreddit"], row["title"],
                                       row["post"]))
    texts.append(prompts.format_target(row["summary"]))
  if max_sentences:
    texts = texts[:max_sentences]
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=model_prefix,
        model_type="unigram", vocab_size=vocab_size, pad_id=di.PAD_ID,
        eos_id=di.EOS_ID, unk_id=2, bos_id=-1, byte_fallback=True,
        character_coverage=1.0, minloglevel=2)
  except RuntimeError as e:
    raise ValueError(f"SentencePiece training on {len(texts)} texts with "
                     f"vocab_size={vocab_size} failed: {e}") from e
  return model_prefix + ".model"
