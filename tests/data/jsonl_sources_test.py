"""Tests for the TensorFlow-free TL;DR file reader."""

import json
import logging
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from nlhf_jax.data import iterators as di
from nlhf_jax.data import jsonl_sources
from nlhf_jax.errors import ConfigError


def test_sft_arrays_follow_the_seq2seq_layout(small_world):
  data_dir, vocab = small_world
  src = jsonl_sources.SftJsonlSource(data_dir, vocab, input_length=64,
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
      "from nlhf_jax.data import jsonl_sources\n"
      f"src = jsonl_sources.SftJsonlSource({data_dir!r}, {vocab!r}, "
      "input_length=64, target_length=16)\n"
      "assert src.arrays('train')['encoder_input_tokens'].shape[1] == 64\n"
      f"pairs = jsonl_sources.PreferenceJsonlSource({data_dir!r}, {vocab!r}, "
      "input_length=64, target_length=16)\n"
      "assert len(pairs.arrays('valid1')['label']) > 0\n"
      "print(sorted(m for m in ('tensorflow', 'seqio') if m in sys.modules))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_pair_arrays_labels_and_p_star(small_world):
  data_dir, vocab = small_world
  src = jsonl_sources.PreferenceJsonlSource(
      data_dir, vocab, input_length=64, target_length=16, with_p_star=True)
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
    jsonl_sources.SftJsonlSource(str(tmp_path / "nope"), vocab)
  with pytest.raises(ConfigError, match="DATA_DIR"):
    jsonl_sources.SftJsonlSource(None, vocab)
  # A missing vocabulary is a config error when the source is built, not a
  # FileNotFoundError at the first encode.
  with pytest.raises(ConfigError, match="x.model' is not a file"):
    jsonl_sources.SftJsonlSource(data_dir, str(tmp_path / "x.model"))
  with pytest.raises(ValueError, match="split"):
    jsonl_sources.PreferenceJsonlSource(data_dir, vocab).arrays("test")


# ------------------- the JSONL path reads the TFDS rows -------------------

REAL_SAMPLE = (pathlib.Path(__file__).resolve().parents[2].parent / "shared"
               / "data" / "tldr_real_sample")


def _tfds_rows(builder_cls, tfds_dir, split):
  """The rows TFDS serves for `split` ([] where the split was not written)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = builder_cls(data_dir=str(tfds_dir))
  if split not in builder.info.splits:
    return []
  ds = builder.as_dataset(split=split, shuffle_files=False)
  return [{k: v.decode("utf-8") if isinstance(v, bytes) else int(v)
           for k, v in ex.items()} for ex in tfds.as_numpy(ds)]


def _jsonl_rows(read, data_dir, split):
  """The rows the JSONL sources read ([] where the split has none)."""
  try:
    return read(str(data_dir), split)
  except ValueError as e:
    assert "No valid" in str(e), e
    return []


def _canonical(rows):
  return sorted(json.dumps(r, sort_keys=True) for r in rows)


def assert_jsonl_and_tfds_read_the_same_rows(raw_dir, tfds_dir):
  """Every split: the same multiset of rows (TFDS reorders by key).

  Returns:
    {dataset: {TFDS split: rows}}, the same shape as the builders' counts.
  """
  from nlhf_jax.data import tldr_builders  # pylint: disable=g-import-not-at-top
  counts = {"tldr_filtered": {}, "tldr_comparisons": {}}
  for split in jsonl_sources.SFT_SPLITS:
    tfds_split = jsonl_sources.TFDS_SFT_SPLIT[split]
    jsonl = _jsonl_rows(jsonl_sources.sft_examples, raw_dir, split)
    tfds_rows = _tfds_rows(tldr_builders.TldrFiltered, tfds_dir, tfds_split)
    assert _canonical(jsonl) == _canonical(tfds_rows), split
    counts["tldr_filtered"][tfds_split] = len(jsonl)
  for split in jsonl_sources.COMPARISON_SPLITS:
    jsonl = _jsonl_rows(jsonl_sources.comparison_examples, raw_dir, split)
    tfds_rows = _tfds_rows(tldr_builders.TldrComparisons, tfds_dir, split)
    assert _canonical(jsonl) == _canonical(tfds_rows), split
    counts["tldr_comparisons"][split] = len(jsonl)
  return counts


def _emitted(reports):
  return {name: {split: t["emitted"] for split, t in r["splits"].items()
                 if split != "unassigned"} for name, r in reports.items()}


def test_jsonl_and_tfds_read_the_same_rows_of_the_synthetic_world(
    small_world, tmp_path):
  from nlhf_jax.data import tldr_builders  # pylint: disable=g-import-not-at-top
  data_dir, vocab = small_world
  reports = tldr_builders.prepare(data_dir, tmp_path / "tfds")
  counts = assert_jsonl_and_tfds_read_the_same_rows(data_dir, tmp_path / "tfds")
  assert counts == _emitted(reports)
  assert all(n > 0 for c in counts.values() for n in c.values()), counts
  # The sources' arrays hold exactly those rows.
  src = jsonl_sources.PreferenceJsonlSource(data_dir, vocab, input_length=64,
                                            target_length=16)
  assert len(src.arrays("valid2")["label"]) == counts["tldr_comparisons"][
      "valid2"]


def test_jsonl_and_tfds_skip_the_same_bad_lines(tldr_env, caplog):
  """The fixture files hold one bad line per skip reason."""
  counts = assert_jsonl_and_tfds_read_the_same_rows(tldr_env.manual.root,
                                                    tldr_env.data_dir)
  assert counts == _emitted(tldr_env.reports)
  want = tldr_env.manual.expected
  assert counts["tldr_comparisons"] == {
      s: want["tldr_comparisons"][s]["emitted"]
      for s in jsonl_sources.COMPARISON_SPLITS}
  # The skips are logged with file:line, as in the builders' report.
  with caplog.at_level(logging.WARNING):
    jsonl_sources.comparison_examples(str(tldr_env.manual.root), "train")
  assert "comparisons/batch3.json:15: choice=2 not in (0, 1)" in caplog.text
  assert "comparisons/batch3.json:" in caplog.text and "not JSON" in (
      caplog.text)


@pytest.mark.skipif(
    not REAL_SAMPLE.exists(),
    reason=f"real TL;DR sample not present at {REAL_SAMPLE} "
    "(only the project's build machines have it)")
def test_jsonl_and_tfds_read_the_same_rows_of_the_real_sample(tmp_path):
  from nlhf_jax.data import tldr_builders  # pylint: disable=g-import-not-at-top
  reports = tldr_builders.prepare(REAL_SAMPLE, tmp_path / "tfds")
  counts = assert_jsonl_and_tfds_read_the_same_rows(REAL_SAMPLE,
                                                    tmp_path / "tfds")
  assert counts == _emitted(reports) == {
      "tldr_filtered": {"train": 20, "validation": 5, "test": 5},
      "tldr_comparisons": {"train": 1, "valid1": 0, "valid2": 0}}


def test_a_split_without_valid_rows_names_file_and_line(tmp_path, small_world):
  _, vocab = small_world
  (tmp_path / "comparisons").mkdir()
  (tmp_path / "comparisons" / "batch3.json").write_text(
      '{"split": "train"}\n{oops\n')
  with pytest.raises(ValueError, match=r"comparisons/batch3.json:2: not JSON"):
    jsonl_sources.comparison_examples(str(tmp_path), "train")
  with pytest.raises(FileNotFoundError, match="tldr_3_filtered"):
    jsonl_sources.SftJsonlSource(str(tmp_path), vocab).arrays("train")
