"""Tests for the pair and prompt feature converters (and SFT's EncDec)."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

from nlhf_jax.data import feature_converters
from nlhf_jax.data import tasks
from nlhf_jax.data import vocab as vocab_lib

INPUT_LENGTH = 192
TARGET_LENGTH = 48


@pytest.fixture(scope="module")
def registered(tldr_env):
  tasks.register_tasks(tldr_env.data_dir, str(tldr_env.sp_model), INPUT_LENGTH,
                       overwrite=True)
  return vocab_lib.load_vocabulary(str(tldr_env.sp_model))


def _pair_example(**overrides):
  ex = {"inputs": [5, 6, 1], "summary_a": [7, 1], "summary_b": [8, 9, 1],
        "label": np.int32(1), "confidence": np.int32(-1), "id": b"x"}
  ex.update(overrides)
  return tf.data.Dataset.from_generator(
      lambda: iter([ex]),
      output_signature={
          k: tf.TensorSpec([None] if isinstance(v, list) else [],
                           tf.string if k == "id" else tf.int32)
          for k, v in ex.items()})


def test_pair_converter_pads_and_shifts_each_stream():
  converter = feature_converters.PairFeatureConverter()
  lengths = {"inputs": 4, "summary_a": 3, "summary_b": 5}
  (got,) = list(converter(_pair_example(), lengths).as_numpy_iterator())
  want = {
      "encoder_input_tokens": [5, 6, 1, 0],
      "decoder_target_tokens_a": [7, 1, 0],
      "decoder_input_tokens_a": [0, 7, 1],
      "decoder_loss_weights_a": [1, 1, 0],
      "decoder_target_tokens_b": [8, 9, 1, 0, 0],
      "decoder_input_tokens_b": [0, 8, 9, 1, 0],
      "decoder_loss_weights_b": [1, 1, 1, 0, 0],
      "label": 1,
      "confidence": -1,
  }
  assert {k: np.asarray(v).tolist() for k, v in got.items()} == want
  model_lengths = converter.get_model_feature_lengths(lengths)
  assert model_lengths["encoder_input_tokens"] == 4
  assert model_lengths["decoder_input_tokens_b"] == 5
  assert set(model_lengths) == set(want)


def test_pair_converter_rejects_missing_label_and_packing():
  ds = _pair_example().map(
      lambda ex: {k: v for k, v in ex.items() if k != "label"})
  lengths = {"inputs": 4, "summary_a": 3, "summary_b": 3}
  with pytest.raises(ValueError, match="int32 scalar feature 'label'"):
    feature_converters.PairFeatureConverter()(ds, lengths)
  with pytest.raises(ValueError, match="does not pack"):
    feature_converters.PairFeatureConverter(pack=True)
  with pytest.raises(ValueError, match="does not pack"):
    feature_converters.PromptFeatureConverter(pack=True)


def test_prompt_converter_keeps_encoder_tokens_only():
  converter = feature_converters.PromptFeatureConverter()
  (got,) = list(converter(_pair_example(), {"inputs": 6}).as_numpy_iterator())
  assert {k: v.tolist() for k, v in got.items()} == {
      "encoder_input_tokens": [5, 6, 1, 0, 0, 0]}


def test_pair_converter_on_preference_task_batches(registered):
  lengths = {"inputs": INPUT_LENGTH, "summary_a": TARGET_LENGTH,
             "summary_b": TARGET_LENGTH}
  raw = seqio.get_mixture_or_task(tasks.PREFERENCE_TASK).get_dataset(
      lengths, split="train", shuffle=False)
  converted = seqio.get_dataset(
      tasks.PREFERENCE_TASK, lengths, dataset_split="train", shuffle=False,
      feature_converter=feature_converters.PairFeatureConverter())
  raw = list(raw.as_numpy_iterator())
  (batch,) = list(converted.batch(len(raw)).as_numpy_iterator())
  n = len(raw)
  assert batch["encoder_input_tokens"].shape == (n, INPUT_LENGTH)
  assert batch["decoder_target_tokens_a"].shape == (n, TARGET_LENGTH)
  assert batch["label"].shape == (n,) and batch["confidence"].shape == (n,)
  for i, ex in enumerate(raw):  # same order: shuffle=False
    k = len(ex["inputs"])
    assert batch["encoder_input_tokens"][i, :k].tolist() == ex["inputs"].tolist()
    assert not batch["encoder_input_tokens"][i, k:].any()
    for s in ("a", "b"):
      target = ex[f"summary_{s}"]
      row = batch[f"decoder_target_tokens_{s}"][i]
      assert row[:len(target)].tolist() == target.tolist()
      assert batch[f"decoder_loss_weights_{s}"][i].sum() == len(target)
      assert batch[f"decoder_input_tokens_{s}"][i, 1:].tolist() == (
          row[:-1].tolist())
    assert batch["label"][i] == ex["label"]
    assert batch["confidence"][i] == ex["confidence"]
  assert registered.decode(raw[0]["summary_a"].tolist()) == (
      raw[0]["summary_a_pretokenized"].decode())


def test_prompt_converter_and_encdec_on_tasks(registered):
  del registered
  prompts_ds = seqio.get_dataset(
      tasks.PROMPTS_TASK, {"inputs": INPUT_LENGTH}, dataset_split="validation",
      shuffle=False, feature_converter=feature_converters.PromptFeatureConverter())
  batch = next(prompts_ds.batch(8).as_numpy_iterator())
  assert set(batch) == {"encoder_input_tokens"}
  assert batch["encoder_input_tokens"].shape == (3, INPUT_LENGTH)
  # Every row ends with EOS then padding.
  for row in batch["encoder_input_tokens"]:
    last = np.flatnonzero(row)[-1]
    assert row[last] == 1

  sft = seqio.get_dataset(
      tasks.SFT_TASK, {"inputs": INPUT_LENGTH, "targets": TARGET_LENGTH},
      dataset_split="validation", shuffle=False,
      feature_converter=seqio.EncDecFeatureConverter(pack=False))
  batch = next(sft.batch(8).as_numpy_iterator())
  assert batch["decoder_target_tokens"].shape == (3, TARGET_LENGTH)
  assert (batch["decoder_input_tokens"][:, 0] == 0).all()
  np.testing.assert_array_equal(batch["decoder_loss_weights"],
                                batch["decoder_target_tokens"] != 0)
