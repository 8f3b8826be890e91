"""Tests for the pure-Python parser of OpenAI's TL;DR files.

The builders' accounting on the full set of bad lines is tested in
tldr_builders_test.py, and the JSONL path against the TFDS path in
jsonl_sources_test.py; these tests need no TensorFlow.
"""

import json
import random

import pytest

from nlhf_jax.data import tldr_files


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"info": {}, "split": "train", "batch": "cnndm2"}', "cnndm"),
        ('{"split": "valid3"}', "unknown_split"),
        ('{"split": null}', "unknown_split"),
    ],
)
def test_comparison_owner_reasons(line, reason):
  with pytest.raises(tldr_files.RowError) as e:
    tldr_files.comparison_owner(tldr_files.load_object(line))
  assert e.value.reason == reason


def test_boolean_choice_is_rejected(tldr_testdata):
  rng = random.Random(0)
  post = tldr_testdata.filtered_row(rng, "x")
  row = tldr_testdata.comparison_row(rng, post, "train", choice=True)
  with pytest.raises(tldr_files.RowError) as e:
    tldr_files.parse_comparison(row)
  assert e.value.reason == "bad_choice"


def test_rows_name_file_and_line_from_a_string_path(tmp_path, tldr_testdata):
  rng = random.Random(1)
  post = tldr_testdata.filtered_row(rng, "p")
  good = tldr_testdata.comparison_row(rng, post, "valid1")
  folder = tmp_path / "comparisons"
  folder.mkdir()
  (folder / "batch3.json").write_text(
      json.dumps(good) + "\n{oops\n" + json.dumps({**good, "choice": 5})
      + "\n")
  rows = list(tldr_files.comparison_rows(str(tmp_path)))
  assert [(r.owner, r.where, r.error and r.error.reason) for r in rows] == [
      ("valid1", "comparisons/batch3.json:1", None),
      (tldr_files.UNASSIGNED, "comparisons/batch3.json:2", "bad_json"),
      ("valid1", "comparisons/batch3.json:3", "bad_choice")]
  examples, tallies = tldr_files.read_split(rows, "valid1")
  assert [e["summary_0"] for e in examples] == [good["summaries"][0]["text"]]
  assert examples[0]["note_1"] == "" and examples[0]["choice"] == good["choice"]
  assert tallies["valid1"].as_dict()["skipped"] == {"bad_choice": 1}
  assert tallies[tldr_files.UNASSIGNED].examples["bad_json"][0].startswith(
      "comparisons/batch3.json:2: not JSON: ")
  assert tallies["valid1"].notes == {"null_note": 1}


def test_filtered_rows_of_a_split(tmp_path, tldr_testdata):
  manual = tldr_testdata.write_manual_dir(tmp_path)
  rows = list(tldr_files.filtered_rows(manual.root, "validation"))
  examples, tallies = tldr_files.read_split(rows, "validation")
  assert examples == manual.filtered["validation"]
  assert tallies["validation"].lines == len(rows)
  assert dict(tallies["validation"].skipped) == {"bad_json": 1}
