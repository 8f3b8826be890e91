"""Versioned seqio tasks over the prepared TL;DR TFDS datasets.

Importing this module registers nothing (the tasks need a data directory and
a vocabulary); call `register_tasks` once, e.g. from the entry point or a gin
file, before asking seqio for a task:

  from nlhf_jax.data import tasks
  tasks.register_tasks(data_dir="~/tensorflow_datasets",
                       vocabulary="/path/tldr_sp.model", input_length=512)
  ds = seqio.get_dataset("tldr_preference_v001", {"inputs": 512,
      "summary_a": 64, "summary_b": 64}, split="train",
      feature_converter=feature_converters.PairFeatureConverter())

Tasks (prompts: canonical TL;DR prompt truncated by OpenAI's rule to
`sequence_length["inputs"]` - 1 tokens, then EOS; see `preprocessors`):

* `tldr_sft_v001` (`tldr_filtered`: train / validation / test):
  inputs = prompt, targets = `" " + summary` + EOS.
* `tldr_preference_v001` (`tldr_comparisons`: train / valid1 / valid2):
  inputs = prompt, summary_a = summaries[0].text + EOS, summary_b =
  summaries[1].text + EOS, label (int32 scalar) = 1 if summary_a was
  preferred else 0 (= 1 - choice), confidence (int32 scalar, -1 = missing).
  With `min_confidence=m`, `tldr_preference_minconf{m}_v001` is registered
  too: the same rows with confidence >= m (e.g. a high-confidence test set
  from valid2).
* `tldr_prompts_v001` (`tldr_filtered`): inputs = prompt only, for online
  training and evaluation.

Every task also passes through `id` and `<feature>_pretokenized` strings.
"""

import functools
from typing import Any, Sequence

from etils import epath
import seqio
import tensorflow as tf

from nlhf_jax.data import preprocessors
from nlhf_jax.data import tldr_builders  # Registers the TFDS builders.
from nlhf_jax.data import vocab as vocab_lib

SFT_TASK = "tldr_sft_v001"
PREFERENCE_TASK = "tldr_preference_v001"
PROMPTS_TASK = "tldr_prompts_v001"
FILTERED_TFDS = f"{tldr_builders.TldrFiltered.name}:1.0.0"
COMPARISONS_TFDS = f"{tldr_builders.TldrComparisons.name}:1.0.0"
DEFAULT_INPUT_LENGTH = 512

# Task name -> the settings it was registered with (for idempotence).
_REGISTERED: dict[str, tuple[Any, ...]] = {}


def preference_task_name(min_confidence: int | None = None) -> str:
  """Name of the preference task with an optional confidence filter."""
  if min_confidence is None:
    return PREFERENCE_TASK
  return f"tldr_preference_minconf{min_confidence}_v001"


def _scalar_feature() -> seqio.Feature:
  return seqio.Feature(
      vocabulary=seqio.PassThroughVocabulary(size=0),
      add_eos=False, dtype=tf.int32, rank=0,
  )


def _task_specs(
    data_dir: str, vocabulary: seqio.Vocabulary, input_length: int,
    min_confidence: int | None,
) -> dict[str, dict[str, Any]]:
  """Returns {task name: seqio.Task keyword arguments}."""
  text = seqio.Feature(vocabulary=vocabulary, add_eos=True)
  tail = [
      preprocessors.tokenize_text_features,
      seqio.preprocessors.append_eos_after_trim,
  ]

  def source(tfds_name: str, splits: Sequence[str]) -> seqio.TfdsDataSource:
    return seqio.TfdsDataSource(
        tfds_name=tfds_name, tfds_data_dir=data_dir, splits=splits
    )

  def head(fn):
    return functools.partial(fn, default_input_length=input_length)

  filtered = source(FILTERED_TFDS, tldr_builders.TldrFiltered.SPLITS)
  comparisons = source(COMPARISONS_TFDS, tldr_builders.TldrComparisons.SPLITS)
  pair_features = {
      "inputs": text, "summary_a": text, "summary_b": text,
      "label": _scalar_feature(), "confidence": _scalar_feature(),
  }
  specs = {
      SFT_TASK: dict(
          source=filtered,
          preprocessors=[head(preprocessors.tldr_sft)] + tail,
          output_features={"inputs": text, "targets": text},
      ),
      PREFERENCE_TASK: dict(
          source=comparisons,
          preprocessors=[head(preprocessors.tldr_preference)] + tail,
          output_features=pair_features,
      ),
      PROMPTS_TASK: dict(
          source=filtered,
          preprocessors=[head(preprocessors.tldr_prompts)] + tail,
          output_features={"inputs": text},
      ),
  }
  if min_confidence is not None:
    keep = functools.partial(
        preprocessors.filter_min_confidence, min_confidence=min_confidence
    )
    specs[preference_task_name(min_confidence)] = dict(
        source=comparisons,
        preprocessors=[keep, head(preprocessors.tldr_preference)] + tail,
        output_features=pair_features,
    )
  return specs


def register_tasks(
    data_dir: epath.PathLike,
    vocabulary: seqio.Vocabulary | str,
    input_length: int = DEFAULT_INPUT_LENGTH,
    *,
    min_confidence: int | None = None,
    overwrite: bool = False,
) -> list[str]:
  """Registers the TL;DR tasks with seqio's TaskRegistry.

  Calling it again with the same settings does nothing; with different
  settings it raises unless `overwrite`.

  Args:
    data_dir: TFDS data directory holding the prepared `tldr_filtered` and
      `tldr_comparisons` (see `tldr_builders.prepare`).
    vocabulary: a seqio vocabulary, or a spec for `vocab.load_vocabulary`
      ("byte" or a SentencePiece .model path).
    input_length: prompt length (tokens, EOS included) used when
      `get_dataset` is called without `sequence_length["inputs"]`.
    min_confidence: also register `tldr_preference_minconf{m}_v001`.
    overwrite: replace tasks registered with other settings.

  Returns:
    The registered task names.

  Raises:
    ValueError: a task of the same name exists with other settings.
  """
  if isinstance(vocabulary, str):
    vocabulary = vocab_lib.load_vocabulary(vocabulary)
  data_dir = str(epath.Path(data_dir).expanduser())
  settings = (data_dir, vocabulary, int(input_length), min_confidence)
  specs = _task_specs(data_dir, vocabulary, int(input_length), min_confidence)
  for name, kwargs in specs.items():
    if name in seqio.TaskRegistry.names():
      if _REGISTERED.get(name) == settings:
        continue
      if not overwrite:
        raise ValueError(
            f"seqio task {name!r} is already registered with other settings "
            f"({_REGISTERED.get(name, 'registered elsewhere')}); pass "
            "overwrite=True to replace it."
        )
      seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(name, **kwargs)
    _REGISTERED[name] = settings
  return list(specs)
