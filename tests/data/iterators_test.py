"""Tests for the resumable NumPy batch iterators."""

import numpy as np
import pytest

from nlhf_jax.data import iterators as di
from nlhf_jax.testing import toy_data


def _arrays(n=10):
  return {"x": np.arange(n), "y": np.arange(n) * 10}


def test_array_iterator_epochs_are_permutations_seeded_by_epoch():
  it = di.ArrayIterator(_arrays(10), 5, seed=3)
  epoch0 = np.concatenate([next(it)["x"] for _ in range(2)])
  epoch1 = np.concatenate([next(it)["x"] for _ in range(2)])
  assert sorted(epoch0) == list(range(10)) == sorted(epoch1)
  assert not np.array_equal(epoch0, epoch1)
  np.testing.assert_array_equal(
      epoch1, np.random.default_rng([3, 1]).permutation(10))


def test_array_iterator_drops_epoch_remainder():
  it = di.ArrayIterator(_arrays(7), 3, seed=None)
  xs = [next(it)["x"].tolist() for _ in range(3)]
  assert xs == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]


def test_array_iterator_resume_reproduces_the_stream():
  ref = di.ArrayIterator(_arrays(10), 4, seed=7)
  stream = [next(ref)["x"] for _ in range(9)]
  it = di.ArrayIterator(_arrays(10), 4, seed=7)
  for _ in range(5):
    next(it)
  state = it.get_state()
  resumed = di.ArrayIterator(_arrays(10), 4, seed=7)
  resumed.set_state(state)
  for want in stream[5:]:
    np.testing.assert_array_equal(next(resumed)["x"], want)


def test_array_iterator_eval_pads_and_marks_valid_rows():
  it = di.ArrayIterator(_arrays(5), 2, repeat=False)
  batches = list(it)
  assert [b["x"].tolist() for b in batches] == [[0, 1], [2, 3], [4, 0]]
  assert [b["valid"].tolist() for b in batches] == [
      [True, True], [True, True], [True, False]]


def test_array_iterator_shards_global_batches_between_processes():
  parts = [next(di.ArrayIterator(_arrays(8), 4, seed=1, shard_index=i,
                                 num_shards=2))["x"] for i in range(2)]
  whole = next(di.ArrayIterator(_arrays(8), 4, seed=1))["x"]
  np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_array_iterator_errors_name_the_problem():
  with pytest.raises(ValueError, match="different numbers of rows"):
    di.ArrayIterator({"a": np.zeros(3), "b": np.zeros(4)}, 1)
  with pytest.raises(ValueError, match="not divisible"):
    di.ArrayIterator(_arrays(8), 3, num_shards=2)
  with pytest.raises(ValueError, match="cannot fill one batch"):
    di.ArrayIterator(_arrays(2), 4)
  with pytest.raises(ValueError, match="batch_in_epoch"):
    di.ArrayIterator(_arrays(4), 2).set_state({"epoch": 0})


class _NoStateIterable:
  """A plain re-iterable (like a tf.data dataset) with no state protocol."""

  def __iter__(self):
    return ({"x": np.array([i])} for i in range(100))


def test_resumable_iterator_replays_to_the_saved_position():
  it = di.ResumableIterator(_NoStateIterable)
  for _ in range(4):
    next(it)
  state = it.get_state()
  assert state == {"consumed": 4}
  resumed = di.ResumableIterator(_NoStateIterable)
  resumed.set_state(state)
  assert next(resumed)["x"].tolist() == [4]


def test_resumable_iterator_delegates_to_native_state():
  make = lambda: di.ArrayIterator(_arrays(10), 2, seed=5)
  it = di.ResumableIterator(make)
  for _ in range(7):
    next(it)
  state = it.get_state()
  assert state["native"] == {"epoch": 1, "batch_in_epoch": 2}
  want = next(it)["x"]
  resumed = di.ResumableIterator(make)
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)["x"], want)


def test_resumable_iterator_errors_when_data_runs_out():
  it = di.ResumableIterator(lambda: iter([{"x": np.zeros(1)}]))
  with pytest.raises(ValueError, match="ran out after 1 batches"):
    it.set_state({"consumed": 3})


def test_seq2seq_features_layout():
  inputs = di.pad_token_rows([[5, 6, 7, 8]], 4)
  targets = di.pad_token_rows([[9]], 4)
  np.testing.assert_array_equal(inputs, [[5, 6, 7, 1]])
  feats = di.seq2seq_features(inputs, targets)
  np.testing.assert_array_equal(feats["decoder_target_tokens"], [[9, 1, 0, 0]])
  np.testing.assert_array_equal(feats["decoder_input_tokens"], [[0, 9, 1, 0]])
  np.testing.assert_array_equal(feats["decoder_loss_weights"], [[1, 1, 0, 0]])


def test_toy_source_targets_are_reversed_prefixes():
  src = toy_data.ToySeq2SeqSource(num_examples=4, input_length=6,
                                  target_length=4)
  feats = src.arrays("train")
  enc, tgt = feats["encoder_input_tokens"], feats["decoder_target_tokens"]
  np.testing.assert_array_equal(tgt[:, :3], enc[:, :3][:, ::-1])
  assert np.all(tgt[:, 3] == di.EOS_ID)
