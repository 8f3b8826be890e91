"""Tests for the seqio data sources: layouts, sharding, resume, evaluation
passes, and an SFT run through the entry point with gin_configs/data."""

import json
import os

import numpy as np
import pytest

from nlhf_jax.data import iterators as di
from nlhf_jax import main as main_lib
from nlhf_jax.data import seqio_source

INPUT_LENGTH = 192
TARGET_LENGTH = 48


def _sources(env):
  kwargs = dict(data_dir=str(env.data_dir), vocabulary=str(env.sp_model),
                input_length=INPUT_LENGTH, target_length=TARGET_LENGTH,
                shuffle_buffer=64)
  return (seqio_source.SeqioSftSource(**kwargs),
          seqio_source.SeqioPreferenceSource(**kwargs))


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_batches_equal(xs, ys):
  assert len(xs) == len(ys)
  for x, y in zip(xs, ys):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_sft_batches_have_the_jsonl_layout_and_resume(tldr_env):
  sft_source, _ = _sources(tldr_env)
  it = sft_source.train_iterator(4, seed=3)
  first = _take(it, 3)
  state = json.loads(json.dumps(it.get_state()))   # As checkpointed.
  after = _take(it, 3)
  batch = first[0]
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      "encoder_input_tokens": ((4, INPUT_LENGTH), np.int32),
      "decoder_target_tokens": ((4, TARGET_LENGTH), np.int32),
      "decoder_input_tokens": ((4, TARGET_LENGTH), np.int32),
      "decoder_loss_weights": ((4, TARGET_LENGTH), np.float32)}
  np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 1:],
                                batch["decoder_target_tokens"][:, :-1])
  np.testing.assert_array_equal(batch["decoder_loss_weights"],
                                batch["decoder_target_tokens"] > 0)
  ends = (batch["encoder_input_tokens"] > 0).sum(axis=1) - 1
  assert np.all(batch["encoder_input_tokens"][np.arange(4), ends] ==
                di.EOS_ID)
  # A fresh iterator restored from the saved position continues exactly.
  resumed = sft_source.train_iterator(4, seed=3)
  resumed.set_state(state)
  _assert_batches_equal(_take(resumed, 3), after)
  assert sft_source.vocab_size == 320
  assert sft_source.encode("TL;DR:") and 0 not in sft_source.encode("a b")


def test_processes_read_their_own_shards(tldr_env):
  sft_source, _ = _sources(tldr_env)
  halves = [next(sft_source.train_iterator(4, seed=3, shard_index=i,
                                           num_shards=2))["encoder_input_tokens"]
            for i in (0, 1)]
  assert [h.shape for h in halves] == [(2, INPUT_LENGTH)] * 2
  # Disjoint shards of the data: no prompt of one half is in the other.
  assert not {r.tobytes() for r in halves[0]} & {r.tobytes()
                                                 for r in halves[1]}
  with pytest.raises(ValueError, match="not divisible"):
    sft_source.train_iterator(3, seed=0, num_shards=2)


def test_evaluation_passes_cover_each_split_once(tldr_env):
  sft_source, pref_source = _sources(tldr_env)
  expected = tldr_env.manual.expected
  n_valid = expected["tldr_filtered"]["validation"]["emitted"]
  batches = list(sft_source.eval_iterator(3))
  assert sum(int(b["valid"].sum()) for b in batches) == n_valid
  assert len(batches) == -(-n_valid // 3)
  pairs = pref_source.eval_arrays()
  good = tldr_env.manual.comparisons["valid1"]
  assert len(pairs["label"]) == expected["tldr_comparisons"]["valid1"][
      "emitted"] == len(good)
  assert sorted(pairs["label"].tolist()) == sorted(1 - r["choice"]
                                                   for r in good)
  assert set(pairs) == set(seqio_source.PAIR_FEATURES)
  for name in ("a", "b"):
    assert pairs[f"decoder_target_tokens_{name}"].shape == (len(good),
                                                            TARGET_LENGTH)
  train = next(pref_source.train_iterator(2, seed=0))
  assert set(np.unique(train["label"])) <= {0, 1}


def test_missing_settings_are_config_errors():
  with pytest.raises(ValueError, match="data_dir is required"):
    seqio_source.SeqioSftSource(vocabulary="byte")
  with pytest.raises(ValueError, match="input_length must be >= 2"):
    seqio_source.SeqioPreferenceSource(data_dir="/x", vocabulary="byte",
                                       input_length=0)


def test_sft_through_the_entry_point_with_the_seqio_gin(tldr_env, tmp_path):
  """runs/sft.gin + data/tldr_seqio.gin trains on the TFDS data."""
  workdir = tmp_path / "sft"
  main_lib.main([
      "--gin_file=gin_configs/runs/sft.gin",
      "--gin_file=gin_configs/data/tldr_seqio.gin",
      "--gin_file=gin_configs/models/tiny.gin",
      "--gin.t5_tiny/t5.T5Config.vocab_size=320",
      "--gin.t5_tiny/t5.T5Config.num_encoder_layers=1",
      "--gin.t5_tiny/t5.T5Config.num_decoder_layers=1",
      f'--gin.DATA_DIR="{tldr_env.data_dir}"',
      f'--gin.VOCABULARY="{tldr_env.sp_model}"',
      f'--gin.WORKDIR="{workdir}"', f"--gin.INPUT_LENGTH={INPUT_LENGTH}",
      f"--gin.TARGET_LENGTH={TARGET_LENGTH}", "--gin.TRAIN_STEPS=3",
      "--gin.BATCH_SIZE=8", "--gin.EVAL_EVERY=3", "--gin.LOG_EVERY=1",
      "--gin.CHECKPOINT_EVERY=3"])
  records = [json.loads(l) for l in open(workdir / "metrics.jsonl",
                                         encoding="utf-8")]
  train = [r for r in records if r.get("split", "train") == "train"]
  evals = [r for r in records if r.get("split") == "eval"]
  assert [r["step"] for r in train] == [1, 2, 3]
  assert all(np.isfinite(r["loss"]) for r in train)
  n_valid = tldr_env.manual.expected["tldr_filtered"]["validation"]["emitted"]
  assert evals and evals[-1]["examples"] == n_valid
  assert os.path.isdir(workdir / "checkpoints" / "3")
  config = (workdir / "config.gin").read_text()
  assert "SeqioSftSource" in config
