"""seqio feature converters for pairwise preferences and prompt-only batches.

Conventions (T5/seqio): pad id 0, EOS id 1, decoder inputs are the targets
shifted right with the pad id 0 as BOS. Supervised fine-tuning uses seqio's
own `seqio.EncDecFeatureConverter` on `tldr_sft_v001`.

`PairFeatureConverter` (task `tldr_preference_v001`; task feature lengths
{"inputs": Lx, "summary_a": Ly, "summary_b": Ly'}) yields, per example:

  encoder_input_tokens      [Lx]  prompt tokens, EOS, zero padding
  decoder_target_tokens_a   [Ly]  summary_a tokens, EOS, zero padding
  decoder_input_tokens_a    [Ly]  the targets shifted right, 0 first
  decoder_loss_weights_a    [Ly]  1 on non-padding target positions
  decoder_target_tokens_b, decoder_input_tokens_b, decoder_loss_weights_b
                            [Ly'] the same for summary_b
  label                     []    int32, 1 if summary_a was preferred else 0
  confidence                []    int32 rater confidence, -1 when missing

so a batch holds one encoder stream for the prompt and one decoder stream per
response: what a pairwise preference model P(y_a > y_b | x) or a
Bradley-Terry reward model r(x, y) scores. Scalar features have a
placeholder length of 1 in `get_model_feature_lengths` (seqio needs an entry
for every model feature); their batched arrays have shape [batch].

`PromptFeatureConverter` (task `tldr_prompts_v001`; {"inputs": Lx}) yields
`encoder_input_tokens` [Lx] only.

Neither converter packs examples: each row is one prompt.
"""

from typing import Mapping

import seqio
import tensorflow as tf

_Spec = seqio.FeatureConverter.FeatureSpec
SCALAR_FEATURES = ("label", "confidence")


def _decoder_stream(tokens: tf.Tensor, suffix: str, bos_id: int):
  return {
      f"decoder_target_tokens{suffix}": tokens,
      f"decoder_input_tokens{suffix}": seqio.utils.make_autoregressive_inputs(
          tokens, bos_id=bos_id
      ),
      f"decoder_loss_weights{suffix}": seqio.non_padding_position(tokens),
  }


class _UnpackedConverter(seqio.FeatureConverter):
  """Base for converters that pad every example and never pack."""

  PACKING_FEATURE_DTYPES = {}

  def __init__(self, pack: bool = False, **kwargs):
    if pack:
      raise ValueError(
          f"{type(self).__name__} does not pack examples; use pack=False."
      )
    super().__init__(pack=False, **kwargs)


class PairFeatureConverter(_UnpackedConverter):
  """Prompt + two responses + preference label (see module docstring)."""

  TASK_FEATURES = {
      "inputs": _Spec(dtype=tf.int32),
      "summary_a": _Spec(dtype=tf.int32),
      "summary_b": _Spec(dtype=tf.int32),
  }
  MODEL_FEATURES = {
      "encoder_input_tokens": _Spec(dtype=tf.int32),
      **{
          f"{name}_{s}": _Spec(dtype=tf.int32)
          for s in ("a", "b")
          for name in (
              "decoder_target_tokens",
              "decoder_input_tokens",
              "decoder_loss_weights",
          )
      },
      "label": _Spec(dtype=tf.int32, rank=0),
      "confidence": _Spec(dtype=tf.int32, rank=0),
  }

  def _convert_features(
      self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]
  ) -> tf.data.Dataset:
    spec = ds.element_spec
    for name in SCALAR_FEATURES:
      if (name not in spec or spec[name].dtype != tf.int32
          or spec[name].shape.rank != 0):
        raise ValueError(
            f"PairFeatureConverter needs an int32 scalar feature {name!r}; "
            f"the dataset has {spec.get(name)}."
        )
    ds = seqio.utils.trim_and_pad_dataset(ds, task_feature_lengths)

    def convert(ex):
      out = {"encoder_input_tokens": ex["inputs"]}
      out.update(_decoder_stream(ex["summary_a"], "_a", self.bos_id))
      out.update(_decoder_stream(ex["summary_b"], "_b", self.bos_id))
      out.update({name: ex[name] for name in SCALAR_FEATURES})
      return out

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(
      self, task_feature_lengths: Mapping[str, int]
  ) -> Mapping[str, int]:
    lengths = {"encoder_input_tokens": task_feature_lengths["inputs"]}
    for s in ("a", "b"):
      for name in ("target_tokens", "input_tokens", "loss_weights"):
        lengths[f"decoder_{name}_{s}"] = task_feature_lengths[f"summary_{s}"]
    lengths.update({name: 1 for name in SCALAR_FEATURES})
    return lengths


class PromptFeatureConverter(_UnpackedConverter):
  """Prompt-only batches: `encoder_input_tokens` padded to the input length."""

  TASK_FEATURES = {"inputs": _Spec(dtype=tf.int32)}
  MODEL_FEATURES = {"encoder_input_tokens": _Spec(dtype=tf.int32)}

  def _convert_features(
      self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]
  ) -> tf.data.Dataset:
    ds = seqio.utils.trim_and_pad_dataset(ds, task_feature_lengths)
    return ds.map(
        lambda ex: {"encoder_input_tokens": ex["inputs"]},
        num_parallel_calls=tf.data.AUTOTUNE,
    )

  def get_model_feature_lengths(
      self, task_feature_lengths: Mapping[str, int]
  ) -> Mapping[str, int]:
    return {"encoder_input_tokens": task_feature_lengths["inputs"]}
