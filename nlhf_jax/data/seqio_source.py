"""The seqio TL;DR tasks as training-job data sources (the scalable path).

`SeqioSftSource` and `SeqioPreferenceSource` serve the registered seqio
tasks (`data.tasks`) over the prepared TFDS datasets to the trainer, with
the interface of the TensorFlow-free `jsonl_sources` sources (the
`iterators.DataSource` protocol plus `encode` and `vocab_size`), so a
gin file swaps one for the other:

  supervised.sft_job.data = @seqio_source.SeqioSftSource()

(`gin_configs/data/tldr_seqio.gin` does this for every run family.)

* Training: `seqio.get_dataset(task, lengths, "train", shuffle=True,
  seed=seed, num_epochs=None, shard_info=ShardInfo(process, processes))`
  through the task's feature converter, batched to this process's rows
  (drop_remainder), as NumPy. Each process reads its own shard of the data.
  The position saved in checkpoints is the number of batches consumed; a
  resumed run rebuilds the same seeded pipeline and skips that many batches
  (`iterators.ResumableIterator`), so it sees the batches an
  uninterrupted run would have seen, at the cost of re-reading them.
* Evaluation: one pass over the evaluation split, read once into memory and
  served by `iterators.ArrayIterator` (padded last batch, `valid`).

Only the features the training steps read are kept, in the dtypes of the
JSONL sources: SFT `encoder_input_tokens`, `decoder_target_tokens`,
`decoder_input_tokens` (int32), `decoder_loss_weights` (float32);
preference `encoder_input_tokens`, `decoder_target_tokens_{a,b}`, `label`,
`confidence` (int32).

TensorFlow and seqio are imported here, inside `nlhf_jax/data/`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterator, Mapping, Optional

import numpy as np
import seqio

from nlhf_jax import errors
from nlhf_jax.data import feature_converters
from nlhf_jax.data import iterators as di
from nlhf_jax.data import tasks
from nlhf_jax.data import tldr_files
from nlhf_jax.data import vocab as vocab_lib

SFT_FEATURES = {"encoder_input_tokens": np.int32,
                "decoder_target_tokens": np.int32,
                "decoder_input_tokens": np.int32,
                "decoder_loss_weights": np.float32}
PAIR_FEATURES = {"encoder_input_tokens": np.int32,
                 "decoder_target_tokens_a": np.int32,
                 "decoder_target_tokens_b": np.int32,
                 "label": np.int32, "confidence": np.int32}


@functools.lru_cache(maxsize=8)
def _vocabulary(spec: str) -> seqio.Vocabulary:
  return vocab_lib.load_vocabulary(spec)


@dataclasses.dataclass(frozen=True)
class _SeqioSource:
  """Shared settings and plumbing (see the subclasses).

  Attributes:
    data_dir: TFDS data directory with the prepared `tldr_filtered` and
      `tldr_comparisons` (`python -m nlhf_jax.data.tldr_builders`).
    vocabulary: a SentencePiece `.model` path, or "byte".
    input_length: prompt tokens, EOS included (OpenAI's truncation).
    target_length: summary tokens, EOS included.
    shuffle_buffer: seqio's shuffle buffer for training.
  """

  data_dir: Optional[str] = None
  vocabulary: Optional[str] = None
  input_length: int = tasks.DEFAULT_INPUT_LENGTH
  target_length: int = 64
  shuffle_buffer: int = 10_000

  _FEATURES = SFT_FEATURES

  def __post_init__(self):
    # Not checked for existence: TFDS directories may be remote (gs://) and
    # the vocabulary may be "byte".
    for name in ("data_dir", "vocabulary"):
      if not isinstance(getattr(self, name), str) or not getattr(self, name):
        raise errors.ConfigError(
            f"{type(self).__name__}.{name} is required (gin: DATA_DIR = TFDS "
            f"data dir, VOCABULARY = .model), got {getattr(self, name)!r}.")
    for name in ("input_length", "target_length", "shuffle_buffer"):
      errors.check_at_least(self, name, getattr(self, name), 2, integer=True)
    errors.check_choice(self, "eval_split", self.eval_split,
                        self._EVAL_SPLITS)

  # What the jobs read besides batches --------------------------------------

  @property
  def vocab_size(self) -> int:
    return _vocabulary(self.vocabulary).vocab_size

  def encode(self, text: str) -> list[int]:
    """Token ids of `text` (no EOS), as the tasks tokenise."""
    return list(_vocabulary(self.vocabulary).encode(text))

  # seqio plumbing -----------------------------------------------------------

  def _task(self) -> str:
    raise NotImplementedError

  def _lengths(self) -> dict[str, int]:
    raise NotImplementedError

  def _converter(self) -> seqio.FeatureConverter:
    raise NotImplementedError

  def _dataset(self, split: str, *, shuffle: bool, seed: Optional[int],
               shard_index: int = 0, num_shards: int = 1):
    # Registered right before use: another source in this process may have
    # registered the same task names with other lengths in between.
    tasks.register_tasks(self.data_dir, _vocabulary(self.vocabulary),
                         self.input_length, overwrite=True,
                         **self._register_kwargs())
    return seqio.get_dataset(
        self._task(), self._lengths(), dataset_split=split, shuffle=shuffle,
        num_epochs=None if shuffle else 1, seed=seed,
        shard_info=seqio.ShardInfo(shard_index, num_shards),
        feature_converter=self._converter())

  def _register_kwargs(self) -> dict[str, Any]:
    return {}

  def _select(self, example: Mapping[str, Any]) -> di.Batch:
    return {k: np.asarray(example[k], dtype) for k, dtype in
            self._FEATURES.items()}

  # DataSource ---------------------------------------------------------------

  def train_iterator(self, batch_size: int, seed: int, shard_index: int = 0,
                     num_shards: int = 1) -> di.ResumableIterator:
    """Endless shuffled batches of this process's share of `batch_size`."""
    local = di.local_rows(batch_size, shard_index, num_shards)

    def make() -> Iterator[di.Batch]:
      ds = self._dataset("train", shuffle=True, seed=seed,
                         shard_index=shard_index, num_shards=num_shards)
      ds = ds.batch(local, drop_remainder=True)
      return (self._select(b) for b in ds.as_numpy_iterator())

    return di.ResumableIterator(make)

  def eval_arrays(self) -> di.Batch:
    """The whole evaluation split (this source's `eval_split`) in memory."""
    ds = self._dataset(self.eval_split, shuffle=False, seed=None)
    rows = [self._select(ex) for ex in ds.as_numpy_iterator()]
    if not rows:
      raise ValueError(f"seqio task {self._task()} has no examples in split "
                       f"{self.eval_split!r} under {self.data_dir}.")
    return {k: np.stack([r[k] for r in rows]) for k in self._FEATURES}

  def eval_iterator(self, batch_size: int, shard_index: int = 0,
                    num_shards: int = 1) -> di.ArrayIterator:
    """One pass over the evaluation split, the last batch padded."""
    return di.ArrayIterator(self.eval_arrays(), batch_size, repeat=False,
                            shard_index=shard_index, num_shards=num_shards)


@dataclasses.dataclass(frozen=True)
class SeqioSftSource(_SeqioSource):
  """`tldr_sft_v001` batches in the SFT layout (`iterators`).

  Attributes:
    eval_split: 'validation' (default) or 'test'.
  """

  eval_split: str = "validation"

  _EVAL_SPLITS = tuple(tldr_files.FILTERED_FILES)

  def _task(self) -> str:
    return tasks.SFT_TASK

  def _lengths(self) -> dict[str, int]:
    return {"inputs": self.input_length, "targets": self.target_length}

  def _converter(self) -> seqio.FeatureConverter:
    return seqio.EncDecFeatureConverter(pack=False)


@dataclasses.dataclass(frozen=True)
class SeqioPreferenceSource(_SeqioSource):
  """`tldr_preference_v001` batches in the pair layout of the PM and RM.

  Attributes:
    eval_split: 'valid1' (default) or 'valid2'.
    min_confidence: train and evaluate on comparisons whose rater
      confidence is at least this (the `minconf` task); None keeps all.
  """

  eval_split: str = "valid1"
  min_confidence: Optional[int] = None

  _FEATURES = PAIR_FEATURES
  _EVAL_SPLITS = tldr_files.COMPARISON_SPLITS

  def __post_init__(self):
    super().__post_init__()
    errors.check_at_least(self, "min_confidence", self.min_confidence, 1,
                          integer=True, also=(None,),
                          hint="None keeps all comparisons")

  def _task(self) -> str:
    return tasks.preference_task_name(self.min_confidence)

  def _register_kwargs(self) -> dict[str, Any]:
    return {"min_confidence": self.min_confidence}

  def _lengths(self) -> dict[str, int]:
    return {"inputs": self.input_length, "summary_a": self.target_length,
            "summary_b": self.target_length}

  def _converter(self) -> seqio.FeatureConverter:
    return feature_converters.PairFeatureConverter()
