"""Tests for the TL;DR seqio tasks and their preprocessors."""

import pytest
import seqio
import tensorflow as tf

from nlhf_jax.data import preprocessors
from nlhf_jax.data import prompts
from nlhf_jax.data import tasks
from nlhf_jax.data import vocab as vocab_lib

INPUT_LENGTH = 192  # fixture prompts: ~110-1050 tokens with the fixture vocab
TARGET_LENGTH = 64
EOS = 1
MIN_CONFIDENCE = 5


@pytest.fixture(scope="module")
def sp(tldr_env):
  """Registers the tasks on the fixture data; returns the vocabulary."""
  vocabulary = vocab_lib.load_vocabulary(str(tldr_env.sp_model))
  tasks.register_tasks(tldr_env.data_dir, vocabulary, INPUT_LENGTH,
                       min_confidence=MIN_CONFIDENCE, overwrite=True)
  return vocabulary


def _read(name, lengths, split):
  task = seqio.get_mixture_or_task(name)
  ds = task.get_dataset(lengths, split=split, shuffle=False)
  return list(ds.as_numpy_iterator())


_CACHE = {}


def _examples(name, lengths, split):
  """`_read`, memoized: building a seqio pipeline costs about a second."""
  key = (name, tuple(sorted((lengths or {}).items())), split)
  if key not in _CACHE:
    _CACHE[key] = _read(name, lengths, split)
  return _CACHE[key]


def _tf_counter(vocabulary):
  return lambda text: int(tf.size(vocabulary.encode_tf(text)))


def _expected_prompt(row, vocabulary, max_tokens):
  return prompts.build_prompt(
      row["subreddit"], row["title"], row["post"],
      num_tokens=_tf_counter(vocabulary), max_tokens=max_tokens, strict=False)


# ------------------------------ SFT task ---------------------------------


@pytest.mark.parametrize("input_length", [None, 128])
def test_sft_prompts_are_truncated_to_the_input_length(
    tldr_env, sp, input_length):
  lengths = None if input_length is None else {
      "inputs": input_length, "targets": TARGET_LENGTH}
  budget = (input_length or INPUT_LENGTH) - 1  # room for EOS
  rows = {r["id"]: r for r in tldr_env.manual.filtered["train"]}
  got = _examples(tasks.SFT_TASK, lengths, "train")
  assert sorted(ex["id"].decode() for ex in got) == sorted(rows)
  for ex in got:
    row = rows[ex["id"].decode()]
    inputs, targets = ex["inputs"].tolist(), ex["targets"].tolist()
    assert inputs[-1] == EOS and targets[-1] == EOS
    assert len(inputs) <= budget + 1
    prompt = sp.decode(inputs[:-1])
    assert prompt == ex["inputs_pretokenized"].decode()
    assert prompt == _expected_prompt(row, sp, budget)
    assert prompt.endswith("\n\nTL;DR:")
    assert sp.decode(targets[:-1]) == " " + row["summary"]


@pytest.mark.parametrize("split", ["validation", "test"])
def test_sft_other_splits_have_every_emitted_row(tldr_env, sp, split):
  got = _examples(tasks.SFT_TASK, None, split)
  assert sorted(ex["id"].decode() for ex in got) == sorted(
      r["id"] for r in tldr_env.manual.filtered[split])


@pytest.mark.parametrize("row_id, newlines", [("t3_long", True),
                                              ("t3_flat", False)])
def test_truncation_cuts_as_little_as_the_openai_rule_allows(
    tldr_env, sp, row_id, newlines):
  (row,) = [r for r in tldr_env.manual.filtered["train"] if r["id"] == row_id]
  (ex,) = [e for e in _examples(tasks.SFT_TASK, None, "train")
           if e["id"].decode() == row_id]
  prompt = ex["inputs_pretokenized"].decode()
  head = prompts.format_prompt(row["subreddit"], row["title"], "")
  post = prompt[len(head) - len("\n\nTL;DR:"):-len("\n\nTL;DR:")]
  assert row["post"].startswith(post) and len(post) < len(row["post"])
  # Walk OpenAI's sequence of candidates: every one before ours is too long.
  count = _tf_counter(sp)
  budget = INPUT_LENGTH - 1
  candidate = row["post"]
  while candidate != post:
    assert count(prompts.format_prompt(
        row["subreddit"], row["title"], candidate)) > budget
    candidate = prompts.cut_post_once(candidate)
  assert len(ex["inputs"]) - 1 == count(prompt) <= budget
  if newlines:  # cut at a paragraph boundary
    assert row["post"][len(post)] == "\n"


@pytest.mark.parametrize("vocab_name", ["byte", "sentencepiece"])
def test_tf_truncation_matches_python_reference(tldr_env, sp, vocab_name):
  vocabulary = seqio.ByteVocabulary() if vocab_name == "byte" else sp
  # Byte ids are UTF-8 bytes: a token counter independent of TF.
  count = ((lambda s: len(s.encode("utf-8"))) if vocab_name == "byte"
           else _tf_counter(sp))
  fn = tf.function(lambda ex, n: preprocessors.truncated_prompt_tf(
      ex, vocabulary, n))
  rows = tldr_env.manual.filtered["train"][:4]
  for max_tokens in (60, 150, 400):
    for row in rows:
      fields = {k: tf.constant(row[k]) for k in ("subreddit", "title", "post")}
      got = fn(fields, tf.constant(max_tokens)).numpy().decode()
      want = prompts.build_prompt(row["subreddit"], row["title"], row["post"],
                                  num_tokens=count, max_tokens=max_tokens,
                                  strict=False)
      assert got == want, (row["id"], max_tokens)


def test_cut_post_once_tf_matches_python():
  for post in ["a\nb\n\nc", "abc\n", "é😀", "x", "\n", "ab\ncdé"]:
    got = preprocessors.cut_post_once_tf(tf.constant(post)).numpy().decode()
    assert got == prompts.cut_post_once(post), post


# --------------------------- preference task -----------------------------


def _pair_lengths(inputs=INPUT_LENGTH):
  return {"inputs": inputs, "summary_a": TARGET_LENGTH,
          "summary_b": TARGET_LENGTH}


@pytest.mark.parametrize("split", ["train", "valid1", "valid2"])
def test_preference_task_labels_and_summaries(tldr_env, sp, split):
  good = tldr_env.manual.comparisons[split]
  got = _examples(tasks.PREFERENCE_TASK, _pair_lengths(), split)
  assert len(got) == len(good)
  by_key = {(r["info"]["id"], r["summaries"][0]["text"]): r for r in good}
  for ex in got:
    row = by_key[(ex["id"].decode(), sp.decode(ex["summary_a"][:-1].tolist()))]
    assert sp.decode(ex["summary_b"][:-1].tolist()) == row["summaries"][1]["text"]
    assert ex["summary_a"][-1] == EOS and ex["summary_b"][-1] == EOS
    assert ex["label"] == (1 if row["choice"] == 0 else 0)  # 1: a preferred
    confidence = (row.get("extra") or {}).get("confidence")
    assert ex["confidence"] == (-1 if confidence is None else confidence)
    assert ex["inputs"][-1] == EOS
    assert len(ex["inputs"]) <= INPUT_LENGTH
    assert ex["inputs_pretokenized"].decode() == _expected_prompt(
        row["info"], sp, INPUT_LENGTH - 1)


def test_min_confidence_task_keeps_confident_rows_only(tldr_env, sp):
  name = tasks.preference_task_name(MIN_CONFIDENCE)
  assert name == "tldr_preference_minconf5_v001"
  for split in ("train", "valid1", "valid2"):
    got = _examples(name, _pair_lengths(), split)
    want = [r for r in tldr_env.manual.comparisons[split]
            if ((r.get("extra") or {}).get("confidence") or -1) >= MIN_CONFIDENCE]
    assert sorted(int(ex["confidence"]) for ex in got) == sorted(
        r["extra"]["confidence"] for r in want)
    assert all(ex["confidence"] >= MIN_CONFIDENCE for ex in got)


# ----------------------------- prompts task ------------------------------


def test_prompts_task_has_prompt_only(tldr_env, sp):
  del tldr_env
  got = _examples(tasks.PROMPTS_TASK, {"inputs": INPUT_LENGTH}, "train")
  sft = {ex["id"]: ex["inputs"].tolist()
         for ex in _examples(tasks.SFT_TASK, None, "train")}
  assert {ex["id"]: ex["inputs"].tolist() for ex in got} == sft
  assert set(got[0]) == {"inputs", "inputs_pretokenized", "id"}


# ---------------------------- registration -------------------------------


def test_register_tasks_is_idempotent_and_guards_changes(tldr_env, sp):
  # Same settings, vocabulary given as a path this time: nothing changes.
  names = tasks.register_tasks(tldr_env.data_dir, str(tldr_env.sp_model),
                               INPUT_LENGTH, min_confidence=MIN_CONFIDENCE)
  assert names == [tasks.SFT_TASK, tasks.PREFERENCE_TASK, tasks.PROMPTS_TASK,
                   "tldr_preference_minconf5_v001"]
  with pytest.raises(ValueError, match="already registered with other"):
    tasks.register_tasks(tldr_env.data_dir, sp, INPUT_LENGTH + 1)
  tasks.register_tasks(tldr_env.data_dir, "byte", 120, overwrite=True)
  for ex in _read(tasks.PROMPTS_TASK, None, "validation"):
    assert len(ex["inputs"]) <= 120 and ex["inputs"][-1] == EOS
    prompt = ex["inputs_pretokenized"].decode()
    assert bytes(t - 3 for t in ex["inputs"][:-1].tolist()).decode() == prompt
    assert prompt.endswith("\n\nTL;DR:")
  # Restore the module's registration for the other tests.
  tasks.register_tasks(tldr_env.data_dir, sp, INPUT_LENGTH,
                       min_confidence=MIN_CONFIDENCE, overwrite=True)
