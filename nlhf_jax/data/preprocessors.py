"""tf.data preprocessors for the TL;DR seqio tasks.

Each function maps the raw features of a prepared TFDS dataset
(`nlhf_jax.data.tldr_builders`) to the string features of one task. Prompts
are built and truncated by OpenAI's rule (the TF twin of
`nlhf_jax.data.prompts`, in graph ops: no Python callback), counting tokens
with the task's own `encode_tf`, so that the prompt plus the EOS seqio
appends fits `sequence_length["inputs"]`.
The length is the one passed to `get_dataset` (seqio fills `sequence_length`
and `output_features` by argument name) or, without one, the task's default.

If the prompt is too long even with an empty post (a title of hundreds of
tokens; Reddit titles have at most 300 characters) the post is emptied and
the tokens are then hard-trimmed by seqio when `get_dataset` is given a
sequence length, losing the `TL;DR:` suffix.
"""

import string
from typing import Callable, Mapping

import seqio
import tensorflow as tf

from nlhf_jax.data import prompts

OutputFeatures = Mapping[str, seqio.Feature]
SequenceLength = Mapping[str, int] | None


def prompt_budget(
    sequence_length: SequenceLength,
    output_features: OutputFeatures,
    default_input_length: int,
) -> int:
  """Token budget of the prompt text.

  Args:
    sequence_length: lengths given to `get_dataset`, or None.
    output_features: the task's output features (must contain "inputs").
    default_input_length: used when `sequence_length` has no "inputs".

  Returns:
    input length - 1 if seqio appends EOS to "inputs", else the input length.
  """
  length = (sequence_length or {}).get("inputs") or default_input_length
  return int(length) - int(output_features["inputs"].add_eos)


def render_prompt_tf(fields: Mapping[str, tf.Tensor]) -> tf.Tensor:
  """`prompts.format_prompt` on scalar string tensors.

  Args:
    fields: scalar tf.string tensors for every field of
      `prompts.PROMPT_TEMPLATE` (subreddit, title, post).

  Returns:
    The prompt, a scalar tf.string.
  """
  parts = []
  for literal, name, _, _ in string.Formatter().parse(prompts.PROMPT_TEMPLATE):
    if literal:
      parts.append(literal)
    if name is not None:
      parts.append(fields[name])
  return tf.strings.join(parts)


def cut_post_once_tf(post: tf.Tensor) -> tf.Tensor:
  """`prompts.cut_post_once` on a scalar string tensor.

  Args:
    post: non-empty scalar tf.string (valid UTF-8).

  Returns:
    The post up to (excluding) its last newline, or without its last
    character (code point) when it has no newline.
  """
  newline = prompts.TRUNCATE_AT
  has_newline = tf.strings.regex_full_match(post, f"(?s).*{newline}.*")
  return tf.cond(
      has_newline,
      lambda: tf.strings.regex_replace(
          post, f"{newline}[^{newline}]*$", "", replace_global=False
      ),
      lambda: tf.strings.substr(
          post, 0, tf.strings.length(post, unit="UTF8_CHAR") - 1,
          unit="UTF8_CHAR",
      ),
  )


def truncated_prompt_tf(
    ex: Mapping[str, tf.Tensor], vocabulary: seqio.Vocabulary, max_tokens: int
) -> tf.Tensor:
  """The canonical prompt of `ex`, its post cut by OpenAI's rule.

  Tokens are counted with `vocabulary.encode_tf`, the tokenizer the task
  itself uses, so the prompt is exactly <= `max_tokens` tokens (unless the
  post had to be emptied, see the module docstring). Same result as
  `prompts.build_prompt(..., strict=False)` with that counter.

  Args:
    ex: example with scalar string "subreddit", "title", "post".
    vocabulary: the task's input vocabulary.
    max_tokens: token budget of the prompt.

  Returns:
    The prompt, a scalar tf.string.
  """
  fields = {k: ex[k] for k in ("subreddit", "title")}

  def too_long(post):
    prompt = render_prompt_tf({**fields, "post": post})
    n = tf.size(vocabulary.encode_tf(prompt))
    return tf.logical_and(n > max_tokens, tf.strings.length(post) > 0)

  post = tf.while_loop(too_long, cut_post_once_tf, [ex["post"]])
  if isinstance(post, (list, tuple)):
    (post,) = post
  return render_prompt_tf({**fields, "post": post})


def _prompt_mapper(
    sequence_length: SequenceLength,
    output_features: OutputFeatures,
    default_input_length: int,
) -> Callable[[Mapping[str, tf.Tensor]], tf.Tensor]:
  vocabulary = output_features["inputs"].vocabulary
  budget = prompt_budget(sequence_length, output_features, default_input_length)
  return lambda ex: truncated_prompt_tf(ex, vocabulary, budget)


def tldr_sft(
    dataset: tf.data.Dataset,
    sequence_length: SequenceLength = None,
    output_features: OutputFeatures | None = None,
    *,
    default_input_length: int,
) -> tf.data.Dataset:
  """`tldr_filtered` rows -> {"inputs": prompt, "targets": " " + summary, "id"}.

  Args:
    dataset: rows with id, subreddit, title, post, summary.
    sequence_length: lengths from `get_dataset` (filled in by seqio).
    output_features: the task's output features (filled in by seqio).
    default_input_length: prompt length when `sequence_length` is None.

  Returns:
    The string features of `tldr_sft_v001`.
  """
  prompt = _prompt_mapper(
      sequence_length, output_features, default_input_length
  )
  return dataset.map(
      lambda ex: {
          "inputs": prompt(ex),
          "targets": tf.strings.join([" ", ex["summary"]]),
          "id": ex["id"],
      }
  )


def tldr_prompts(
    dataset: tf.data.Dataset,
    sequence_length: SequenceLength = None,
    output_features: OutputFeatures | None = None,
    *,
    default_input_length: int,
) -> tf.data.Dataset:
  """`tldr_filtered` rows -> {"inputs": prompt, "id"} (prompt-only task)."""
  prompt = _prompt_mapper(
      sequence_length, output_features, default_input_length
  )
  return dataset.map(lambda ex: {"inputs": prompt(ex), "id": ex["id"]})


def tldr_preference(
    dataset: tf.data.Dataset,
    sequence_length: SequenceLength = None,
    output_features: OutputFeatures | None = None,
    *,
    default_input_length: int,
) -> tf.data.Dataset:
  """`tldr_comparisons` rows -> pairwise preference examples.

  Args:
    dataset: rows with the `tldr_comparisons` features.
    sequence_length: lengths from `get_dataset` (filled in by seqio).
    output_features: the task's output features (filled in by seqio).
    default_input_length: prompt length when `sequence_length` is None.

  Returns:
    {"inputs": prompt, "summary_a": summaries[0].text, "summary_b":
    summaries[1].text (both verbatim, leading space kept), "label": int32,
    1 if summary_a was preferred else 0 (= 1 - choice), "confidence": int32
    (-1 when missing), "id"}.
  """
  prompt = _prompt_mapper(
      sequence_length, output_features, default_input_length
  )
  return dataset.map(
      lambda ex: {
          "inputs": prompt(ex),
          "summary_a": ex["summary_0"],
          "summary_b": ex["summary_1"],
          "label": 1 - tf.cast(ex["choice"], tf.int32),
          "confidence": tf.cast(ex["confidence"], tf.int32),
          "id": ex["id"],
      }
  )


def filter_min_confidence(
    dataset: tf.data.Dataset, *, min_confidence: int
) -> tf.data.Dataset:
  """Keeps comparisons with `confidence >= min_confidence`.

  Rows whose confidence is missing (-1) are dropped for any
  `min_confidence >= 0`.

  Args:
    dataset: examples with an int32 "confidence" feature.
    min_confidence: the smallest confidence kept.

  Returns:
    The filtered dataset.
  """
  return dataset.filter(lambda ex: ex["confidence"] >= min_confidence)


def tokenize_text_features(
    dataset: tf.data.Dataset,
    output_features: OutputFeatures,
    copy_pretokenized: bool = True,
) -> tf.data.Dataset:
  """`seqio.preprocessors.tokenize` restricted to the token features.

  seqio's `tokenize` would encode every output feature, including the int32
  scalar "label" and "confidence"; this encodes only rank-1 features.

  Args:
    dataset: examples with string features.
    output_features: the task's output features.
    copy_pretokenized: keep "<name>_pretokenized" copies of the strings.

  Returns:
    The dataset with token features encoded (no EOS yet).
  """
  token_features = {k: f for k, f in output_features.items() if f.rank == 1}
  return seqio.preprocessors.tokenize(
      dataset, token_features, copy_pretokenized=copy_pretokenized
  )
