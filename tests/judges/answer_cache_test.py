"""The judge's answer cache: appends survive a torn last line."""

import pytest

from nlhf_jax.errors import DataError
from nlhf_jax.judges import answer_cache


def test_round_trip_and_a_torn_last_line(tmp_path):
  path = str(tmp_path / "cache.jsonl")
  cache = answer_cache.AnswerCache(path)
  key = answer_cache.question_key("m", "t", "x", "a", "b")
  cache.put(key, answer_cache.Answer(0.25, "B", soft=True))
  cache.put("k2", answer_cache.Answer(1.0, "A", soft=False))
  with open(path, "a", encoding="utf-8") as f:
    f.write('{"key": "k3", "p_fi')  # A kill mid-write.
  again = answer_cache.AnswerCache(path)
  assert again.torn_lines == 1 and len(again) == 2
  assert again.get(key) == answer_cache.Answer(0.25, "B", soft=True)
  again.put("k3", answer_cache.Answer(0.5, "A", soft=True))
  assert len(answer_cache.AnswerCache(path)) == 3


def test_a_bad_line_in_the_middle_is_an_error(tmp_path):
  path = tmp_path / "cache.jsonl"
  path.write_text('not json\n{"key": "k", "p_first": 1, "answer": "A", '
                  '"soft": false}\n')
  with pytest.raises(DataError, match="cache.jsonl:1"):
    answer_cache.AnswerCache(str(path))


def test_keys_depend_on_every_field():
  fields = ["m", "t", "x", "a", "b"]
  keys = {answer_cache.question_key(*fields)}
  for i in range(5):
    changed = list(fields)
    changed[i] += "!"
    keys.add(answer_cache.question_key(*changed))
  assert len(keys) == 6
