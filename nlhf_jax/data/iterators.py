"""Resumable host-side batch iterators (NumPy only, no TensorFlow).

The trainer consumes any `StatefulIterator`: an iterator of batches
(`dict[str, np.ndarray]`, leading dimension = this process's rows) with
`get_state()` returning a JSON-serialisable position and `set_state()`
restoring it. The position is checkpointed with the train state, so a
resumed run sees exactly the batches the uninterrupted run would have seen.

* `ArrayIterator`: rows of in-memory arrays, reshuffled every epoch with a
  permutation seeded by (seed, epoch); position = (epoch, batch in epoch).
  Evaluation mode makes one pass and pads the last batch, marking real rows
  in the boolean feature `valid`.
* `ResumableIterator`: adapter for anything re-creatable that yields dict
  batches (e.g. a seqio / tf.data dataset's `as_numpy_iterator`). If the
  underlying iterator has its own `get_state`/`set_state` they are used,
  otherwise the position is the number of batches consumed and restoring
  replays that many batches from a fresh iterator (O(position) on resume).
* `DataSource`: what an algorithm's training job needs from a dataset:
  a training iterator and a one-pass evaluation iterator.
* `InMemorySplits`: the `DataSource` iterators of a source whose splits are
  in-memory arrays (`arrays(split)`), e.g. the JSONL sources.

SFT feature layout (seqio `EncDecFeatureConverter` names): pad 0, EOS 1
(`nlhf_jax.tokens`),
  encoder_input_tokens   [b, Lx]  inputs + EOS, zero padded;
  decoder_target_tokens  [b, Ly]  targets + EOS, zero padded;
  decoder_input_tokens   [b, Ly]  targets shifted right (0 first);
  decoder_loss_weights   [b, Ly]  1 on non-padding target positions.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol
from typing import Sequence

import numpy as np

from nlhf_jax.tokens import EOS_ID, PAD_ID  # pylint: disable=unused-import

Batch = dict[str, np.ndarray]
VALID_KEY = "valid"


class StatefulIterator(Protocol):
  """Iterator of batches whose position can be saved and restored."""

  def __iter__(self) -> Iterator[Batch]:
    ...

  def __next__(self) -> Batch:
    ...

  def get_state(self) -> dict[str, Any]:
    ...

  def set_state(self, state: Mapping[str, Any]) -> None:
    ...


class DataSource(Protocol):
  """A dataset as the training jobs see it."""

  def train_iterator(self, batch_size: int, seed: int, shard_index: int = 0,
                     num_shards: int = 1) -> StatefulIterator:
    """Endless shuffled batches of `batch_size` rows (global)."""
    ...

  def eval_iterator(self, batch_size: int, shard_index: int = 0,
                    num_shards: int = 1) -> StatefulIterator:
    """One pass over the evaluation split, last batch padded (`valid`)."""
    ...


def local_rows(batch_size: int, shard_index: int, num_shards: int) -> int:
  """This process's rows of a global batch split over `num_shards` processes.

  Raises:
    ValueError: a batch below 1, a bad shard index, or a batch that the
      number of processes does not divide.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index {shard_index} not in [0, {num_shards}).")
  if batch_size % num_shards:
    raise ValueError(f"Global batch size {batch_size} is not divisible by "
                     f"the number of processes {num_shards}.")
  return batch_size // num_shards


class ArrayIterator:
  """Batches of rows from in-memory arrays with a resumable position.

  Training mode (`repeat=True`): epoch e visits the rows in the order
  `np.random.default_rng([seed, e]).permutation(n)` (identity order when
  `seed` is None) in `n // batch_size` global batches; the remainder of each
  epoch is dropped. Evaluation mode (`repeat=False`): one pass in row order;
  the final partial batch is padded with zero rows and every batch carries
  `valid` [rows] (True on real rows).

  With `num_shards` processes, each global batch is split in contiguous
  blocks and this process yields block `shard_index`.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int, *,
               seed: int | None = 0, repeat: bool = True,
               shard_index: int = 0, num_shards: int = 1):
    if not arrays:
      raise ValueError("ArrayIterator needs at least one array.")
    sizes = {name: len(a) for name, a in arrays.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"Arrays have different numbers of rows: {sizes}.")
    self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
    self._n = next(iter(sizes.values()))
    self._batch = batch_size
    self._local = local_rows(batch_size, shard_index, num_shards)
    self._shard = shard_index
    self._seed = seed
    self._repeat = repeat
    if repeat and self._n < batch_size:
      raise ValueError(f"{self._n} rows cannot fill one batch of "
                       f"{batch_size} rows.")
    self._epoch = 0
    self._index = 0
    self._order = None

  @property
  def num_rows(self) -> int:
    return self._n

  def _epoch_order(self) -> np.ndarray:
    if self._order is None:
      if self._seed is None or not self._repeat:
        self._order = np.arange(self._n)
      else:
        rng = np.random.default_rng([self._seed, self._epoch])
        self._order = rng.permutation(self._n)
    return self._order

  def __iter__(self) -> "ArrayIterator":
    return self

  def __next__(self) -> Batch:
    start = self._index * self._batch
    if self._repeat and start + self._batch > self._n:
      self._epoch, self._index, self._order = self._epoch + 1, 0, None
      start = 0
    if not self._repeat and start >= self._n:
      raise StopIteration
    rows = self._epoch_order()[start:start + self._batch]
    rows = rows[self._shard * self._local:(self._shard + 1) * self._local]
    self._index += 1
    batch = {k: v[rows] for k, v in self._arrays.items()}
    if self._repeat:
      return batch
    valid = np.zeros(self._local, bool)
    valid[:len(rows)] = True
    if len(rows) < self._local:
      batch = {k: _pad_rows(v, self._local) for k, v in batch.items()}
    batch[VALID_KEY] = valid
    return batch

  def get_state(self) -> dict[str, Any]:
    return {"epoch": self._epoch, "batch_in_epoch": self._index}

  def set_state(self, state: Mapping[str, Any]) -> None:
    try:
      epoch, index = int(state["epoch"]), int(state["batch_in_epoch"])
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f"Bad ArrayIterator state {state!r}: needs integer "
                       "'epoch' and 'batch_in_epoch'.") from e
    self._epoch, self._index, self._order = epoch, index, None


def _pad_rows(a: np.ndarray, rows: int) -> np.ndarray:
  pad = [(0, rows - len(a))] + [(0, 0)] * (a.ndim - 1)
  return np.pad(a, pad)


class ResumableIterator:
  """Makes any re-creatable iterable of dict batches resumable.

  Args:
    make_iterable: returns a fresh iterable over the batches, in the same
      order every time (e.g. `lambda: ds.as_numpy_iterator()` for a
      deterministic tf.data pipeline).
  """

  def __init__(self, make_iterable: Callable[[], Iterable[Mapping[str, Any]]]):
    self._make = make_iterable
    self._it = iter(make_iterable())
    self._consumed = 0
    self._native = all(hasattr(self._it, m) for m in ("get_state",
                                                      "set_state"))

  def __iter__(self) -> "ResumableIterator":
    return self

  def __next__(self) -> Batch:
    batch = next(self._it)
    self._consumed += 1
    return {k: np.asarray(v) for k, v in batch.items()}

  def get_state(self) -> dict[str, Any]:
    state = {"consumed": self._consumed}
    if self._native:
      state["native"] = self._it.get_state()
    return state

  def set_state(self, state: Mapping[str, Any]) -> None:
    if "consumed" not in state:
      raise ValueError(f"Bad ResumableIterator state {state!r}: no "
                       "'consumed'.")
    self._it = iter(self._make())
    self._consumed = int(state["consumed"])
    if self._native and "native" in state:
      self._it.set_state(state["native"])
      return
    for i in range(self._consumed):
      try:
        next(self._it)
      except StopIteration as e:
        raise ValueError(f"Cannot restore position {self._consumed}: the "
                         f"data ran out after {i} batches.") from e


def pad_token_rows(rows: Sequence[Sequence[int]], length: int, *,
                   append_eos: bool = True) -> np.ndarray:
  """Token lists -> int32 [n, length]: truncated, EOS appended, zero padded.

  Like seqio's `append_eos_after_trim`: a row is cut to `length - 1` tokens
  before EOS is appended, so every row ends with EOS.
  """
  out = np.zeros((len(rows), length), np.int32)
  keep = length - 1 if append_eos else length
  for i, row in enumerate(rows):
    row = list(row)[:keep] + ([EOS_ID] if append_eos else [])
    out[i, :len(row)] = row
  return out


def seq2seq_features(inputs_nt: np.ndarray, targets_nt: np.ndarray) -> Batch:
  """SFT features (module docstring) from padded inputs and targets."""
  targets_nt = np.asarray(targets_nt, np.int32)
  dec_in = np.zeros_like(targets_nt)
  dec_in[:, 1:] = targets_nt[:, :-1]
  return {
      "encoder_input_tokens": np.asarray(inputs_nt, np.int32),
      "decoder_target_tokens": targets_nt,
      "decoder_input_tokens": dec_in,
      "decoder_loss_weights": (targets_nt > 0).astype(np.float32),
  }


class InMemorySplits:
  """`DataSource` iterators over splits held as in-memory arrays.

  A subclass defines `arrays(split)` (the whole split as features) and
  `eval_split`; `train_iterator` serves `train_split` ("train") endlessly
  and shuffled, `eval_iterator` one pass over `eval_split` with the last
  batch padded (`ArrayIterator`).
  """

  train_split = "train"
  eval_split: str

  def arrays(self, split: str) -> Batch:
    raise NotImplementedError

  def train_iterator(self, batch_size: int, seed: int, shard_index: int = 0,
                     num_shards: int = 1) -> ArrayIterator:
    return ArrayIterator(self.arrays(self.train_split), batch_size, seed=seed,
                         shard_index=shard_index, num_shards=num_shards)

  def eval_iterator(self, batch_size: int, shard_index: int = 0,
                    num_shards: int = 1) -> ArrayIterator:
    return ArrayIterator(self.arrays(self.eval_split), batch_size,
                         repeat=False, shard_index=shard_index,
                         num_shards=num_shards)
