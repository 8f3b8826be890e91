"""Tests for the canonical TL;DR prompt and OpenAI's truncation rule."""

import subprocess
import sys

import pytest

from nlhf_jax.data import prompts

# len(format_prompt("s", "t", "")): the fixed text around an empty post.
_OVERHEAD = len("SUBREDDIT: r/s\n\nTITLE: t\n\nPOST: \n\nTL;DR:")


def _words(text: str) -> int:
  return len(text.split())


def test_format_prompt_is_the_openai_template():
  got = prompts.format_prompt("relationships", "Help me", "Line 1\n\nLine 2")
  assert got == (
      "SUBREDDIT: r/relationships\n\nTITLE: Help me\n\n"
      "POST: Line 1\n\nLine 2\n\nTL;DR:"
  )
  assert prompts.format_target("he left.") == " he left."
  assert _OVERHEAD == 40


@pytest.mark.parametrize(
    "post, max_tokens, want",
    [
        ("aaa\nbbb\nccc", 51, "aaa\nbbb\nccc"),  # fits: unchanged
        ("aaa\nbbb\nccc", 50, "aaa\nbbb"),  # one cut at the last newline
        ("aaa\nbbb\nccc", 46, "aaa"),  # two cuts
        ("aaa\nbbb\nccc", 42, "aa"),  # no newline left: one character
        ("abc\n", 43, "abc"),  # a trailing newline is cut alone
        ("a\n\nb", 42, "a\n"),  # "\n\n" loses one newline per step
        ("abcdef", 43, "abc"),  # no newline: character by character
    ],
)
def test_truncate_post_with_character_counts(post, max_tokens, want):
  got = prompts.truncate_post(
      "s", "t", post, num_tokens=len, max_tokens=max_tokens
  )
  assert got == want
  assert len(prompts.format_prompt("s", "t", got)) <= max_tokens


def test_truncate_retokenizes_after_every_cut():
  # 6 template words + 5 post words = 11 words.
  post = "one two\nthree four five"
  calls = []

  def counting(text):
    calls.append(text)
    return _words(text)

  assert prompts.truncate_post(
      "s", "t", post, num_tokens=counting, max_tokens=9) == "one two"
  assert len(calls) == 2  # initial + after one cut
  # At 7 words the newline-free "one two" loses characters until "one "
  # (1 word) leaves 7 words; "one t" still counts 8.
  assert prompts.truncate_post(
      "s", "t", post, num_tokens=_words, max_tokens=7) == "one "


def test_number_of_tokenizations_is_one_plus_number_of_cuts():
  calls = []
  prompts.truncate_post(
      "s", "t", "aaa\nbbb\nccc",
      num_tokens=lambda s: calls.append(s) or len(s), max_tokens=42,
  )
  # "aaa\nbbb\nccc" -> "aaa\nbbb" -> "aaa" -> "aa".
  assert [c[c.index("POST: ") + 6:-len("\n\nTL;DR:")] for c in calls] == [
      "aaa\nbbb\nccc", "aaa\nbbb", "aaa", "aa"]


def test_title_too_long_strict_raises_and_lenient_empties_post():
  with pytest.raises(prompts.PromptTooLongError, match="even with an empty"):
    prompts.truncate_post("s", "t", "abc", num_tokens=len, max_tokens=39)
  assert prompts.truncate_post(
      "s", "t", "abc", num_tokens=len, max_tokens=39, strict=False) == ""


def test_build_prompt_checks_arguments():
  assert prompts.build_prompt("s", "t", "x\ny", num_tokens=len,
                              max_tokens=41) == prompts.format_prompt(
                                  "s", "t", "x")
  assert prompts.build_prompt("s", "t", "x\ny") == prompts.format_prompt(
      "s", "t", "x\ny")
  with pytest.raises(ValueError, match="both num_tokens and max_tokens"):
    prompts.build_prompt("s", "t", "x", max_tokens=10)
  with pytest.raises(ValueError, match="max_tokens must be >= 1"):
    prompts.truncate_post("s", "t", "x", num_tokens=len, max_tokens=0)


def test_prompts_module_does_not_import_tensorflow():
  code = ("import sys, nlhf_jax.data.prompts; "
          "print(sorted(m for m in ('tensorflow', 'seqio') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True)
  assert out.stdout.strip() == "[]"
