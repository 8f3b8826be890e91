"""Tests for the TensorFlow-free TL;DR file reader."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nlhf_jax import data_iterators as di
from nlhf_jax import jsonl_data
from nlhf_jax.errors import ConfigError


def test_sft_arrays_follow_the_seq2seq_layout(small_world):
  data_dir, vocab = small_world
  src = jsonl_data.SftJsonlSource(data_dir, vocab, input_length=64,
                                  target_length=16)
  feats = src.arrays("train")
  rows = [json.loads(l) for l in open(f"{data_dir}/tldr_3_filtered/"
                                      "train.jsonl", encoding="utf-8")]
  assert feats["encoder_input_tokens"].shape == (len(rows), 64)
  target = feats["decoder_target_tokens"][0]
  length = int((target > 0).sum())
  want = src.encode(" " + rows[0]["summary"])[:15] + [di.EOS_ID]
  assert target[:length].tolist() == want
  np.testing.assert_array_equal(feats["decoder_input_tokens"][:, 1:],
                                feats["decoder_target_tokens"][:, :-1])
  # Every prompt ends with EOS and fits (OpenAI truncation, then EOS).
  enc = feats["encoder_input_tokens"]
  ends = (enc > 0).sum(axis=1) - 1
  assert np.all(enc[np.arange(len(enc)), ends] == di.EOS_ID)


def test_reading_the_files_imports_no_tensorflow(small_world):
  # A fresh interpreter: other tests of this pytest process may have imported
  # TensorFlow (the seqio/TFDS data tests), which says nothing about ours.
  data_dir, vocab = small_world
  code = (
      "import sys\n"
      "from nlhf_jax import jsonl_data\n"
      f"src = jsonl_data.SftJsonlSource({data_dir!r}, {vocab!r}, "
      "input_length=64, target_length=16)\n"
      "assert src.arrays('train')['encoder_input_tokens'].shape[1] == 64\n"
      f"pairs = jsonl_data.PreferenceJsonlSource({data_dir!r}, {vocab!r}, "
      "input_length=64, target_length=16)\n"
      "assert len(pairs.arrays('valid1')['label']) > 0\n"
      "print(sorted(m for m in ('tensorflow', 'seqio') if m in sys.modules))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_pair_arrays_labels_and_p_star(small_world):
  data_dir, vocab = small_world
  src = jsonl_data.PreferenceJsonlSource(data_dir, vocab, input_length=64,
                                         target_length=16, with_p_star=True)
  feats = src.arrays("valid1")
  rows = []
  for path in sorted(__import__("glob").glob(f"{data_dir}/comparisons/*")):
    rows += [json.loads(l) for l in open(path, encoding="utf-8")]
  rows = [r for r in rows if r["split"] == "valid1"]
  np.testing.assert_array_equal(feats["label"],
                                [1 - r["choice"] for r in rows])
  assert np.all((feats["p_star"] >= 0) & (feats["p_star"] <= 1))
  batch = next(src.eval_iterator(4))
  assert set(batch) >= {"encoder_input_tokens", "decoder_target_tokens_a",
                        "decoder_target_tokens_b", "label", "p_star", "valid"}


def test_bad_settings_are_reported(small_world, tmp_path):
  data_dir, vocab = small_world
  with pytest.raises(ConfigError, match="not a directory"):
    jsonl_data.SftJsonlSource(str(tmp_path / "nope"), vocab)
  with pytest.raises(ConfigError, match="DATA_DIR"):
    jsonl_data.SftJsonlSource(None, vocab)
  # A missing vocabulary is a config error when the source is built, not a
  # FileNotFoundError at the first encode.
  with pytest.raises(ConfigError, match="x.model' is not a file"):
    jsonl_data.SftJsonlSource(data_dir, str(tmp_path / "x.model"))
  with pytest.raises(ValueError, match="split"):
    jsonl_data.PreferenceJsonlSource(data_dir, vocab).arrays("test")
