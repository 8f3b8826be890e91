"""Tests of the synthetic TL;DR generator: formats, determinism, label model."""

import collections
import filecmp
import json
import os
import re

import numpy as np
import pytest

from nlhf_jax.data import annotators
from nlhf_jax.data import synthetic
from nlhf_jax.data import synthetic_text as st

_TLDR_KEYS = ["id", "subreddit", "title", "post", "summary"]
_COMPARISON_KEYS = ["info", "summaries", "choice", "worker", "batch", "split",
                    "extra"]
_POST_SPLIT_OF = {"train": "train", "valid1": "valid", "valid2": "test"}


def _read_jsonl(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _listing(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, files in os.walk(root) for f in files)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """A world of 300 posts and 3000 comparisons, read back from its files."""
  out = str(tmp_path_factory.mktemp("world"))
  result = synthetic.generate(out, seed=7, size=300, num_comparisons=3000,
                              batch_size=1000)
  posts = {s: _read_jsonl(os.path.join(out, "tldr_3_filtered", f"{s}.jsonl"))
           for s in ("train", "valid", "test")}
  comparisons = {}
  for name in sorted(os.listdir(os.path.join(out, "comparisons"))):
    comparisons[name] = _read_jsonl(os.path.join(out, "comparisons", name))
  return out, result, posts, comparisons


def test_same_seed_gives_byte_identical_files(tmp_path):
  a, b, c = (str(tmp_path / n) for n in "abc")
  synthetic.generate(a, seed=3, size=40, num_comparisons=90, batch_size=40)
  synthetic.generate(b, seed=3, size=40, num_comparisons=90, batch_size=40)
  synthetic.generate(c, seed=4, size=40, num_comparisons=90, batch_size=40)
  names = _listing(a)
  assert names == _listing(b) == _listing(c)
  assert names == ["comparisons/batch3.json", "comparisons/batch4.json",
                   "comparisons/batch5.json", "tldr_3_filtered/test.jsonl",
                   "tldr_3_filtered/train.jsonl", "tldr_3_filtered/valid.jsonl"]
  _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
  assert not mismatch and not errors
  match, _, _ = filecmp.cmpfiles(a, c, names, shallow=False)
  assert not match, f"seed 3 and seed 4 share files {match}"


def test_rerun_into_same_directory_removes_stale_batches(tmp_path):
  out = str(tmp_path)
  synthetic.generate(out, seed=0, size=10, num_comparisons=50, batch_size=10)
  synthetic.generate(out, seed=0, size=10, num_comparisons=20, batch_size=10)
  assert sorted(os.listdir(tmp_path / "comparisons")) == ["batch3.json",
                                                          "batch4.json"]


def test_tldr_files_have_the_openai_schema(world):
  _, result, posts, _ = world
  assert {s: len(r) for s, r in posts.items()} == result.posts_per_split
  assert result.posts_per_split == {"train": 270, "valid": 15, "test": 15}
  ids = [r["id"] for rows in posts.values() for r in rows]
  assert len(set(ids)) == len(ids)
  for rows in posts.values():
    for row in rows:
      assert list(row) == _TLDR_KEYS
      assert all(isinstance(v, str) and v for v in row.values())
      assert re.fullmatch(r"t3_[0-9a-z]{6}", row["id"])
      assert row["subreddit"] in st.SUBREDDITS
      assert not row["summary"].startswith(" ")
      assert "\n" in row["post"]
      assert 40 <= len(row["post"].split()) <= 90
      assert 2 <= len(row["summary"].split()) <= 24


def test_comparison_files_have_the_openai_schema(world):
  _, result, posts, comparisons = world
  by_id = {s: {r["id"]: r for r in rows} for s, rows in posts.items()}
  splits = collections.Counter()
  notes, confidences = collections.Counter(), collections.Counter()
  for name, rows in comparisons.items():
    assert len(rows) == 1000
    for row in rows:
      assert list(row) == _COMPARISON_KEYS
      assert list(row["info"]) == ["id", "post", "title", "subreddit"]
      post = by_id[_POST_SPLIT_OF[row["split"]]][row["info"]["id"]]
      assert row["info"] == {k: post[k] for k in ("id", "post", "title",
                                                  "subreddit")}
      assert len(row["summaries"]) == 2
      assert row["summaries"][0]["policy"] != row["summaries"][1]["policy"]
      for summary in row["summaries"]:
        assert list(summary) == ["text", "policy", "note"]
        assert summary["text"].startswith(" ")
        assert not summary["text"].startswith("  ")
        assert summary["policy"] in st.POLICIES
        assert summary["note"] is None or isinstance(summary["note"], str)
        notes[summary["note"] is None] += 1
      assert row["choice"] in (0, 1)
      assert row["worker"] in annotators.WORKER_TYPE
      assert f"{row['batch']}.json" == name
      splits[row["split"]] += 1
      assert list(row["extra"]) in ([], ["confidence"])
      if row["extra"]:
        assert type(row["extra"]["confidence"]) is int
        assert 1 <= row["extra"]["confidence"] <= 9
      confidences[bool(row["extra"])] += 1
  assert dict(splits) == result.comparisons_per_split
  assert result.comparisons_per_split == {"train": 2400, "valid1": 300,
                                          "valid2": 300}
  assert notes[True] > 0 and notes[False] > 0, "need null and non-null notes"
  assert confidences[True] > 0 and confidences[False] > 0


def test_posts_parse_back_to_their_facts_and_stay_in_vocabulary():
  taken = set()
  vocab = st.world_vocabulary()
  assert len(vocab) < 450
  for i in range(400):
    post = synthetic.make_post(seed=11, index=i, taken_ids=taken)
    assert st.parse_facts(post.post, post.situation.subreddit) == (
        post.situation.facts)
    text = " ".join([post.title, post.post, post.summary])
    assert set(st.tokenize(text)) <= vocab


def test_labels_follow_the_annotator_model(world):
  """Label agreement with P* and per-type label rates match the model."""
  _, _, _, comparisons = world
  rows = [r for rs in comparisons.values() for r in rs]
  judge = annotators.PopulationPreference()
  prompts = [annotators.canonical_prompt(r["info"]["subreddit"],
                                         r["info"]["title"], r["info"]["post"])
             for r in rows]
  texts = [[s["text"] for s in r["summaries"]] for r in rows]
  p_star = judge(prompts, [t[0] for t in texts], [t[1] for t in texts])
  first = np.array([r["choice"] == 0 for r in rows], dtype=np.float64)
  n = len(rows)

  def within(observed, probs, sigmas=4.0):
    tol = sigmas * np.sqrt(np.sum(probs * (1 - probs))) / len(probs)
    assert abs(observed - probs.mean()) <= tol, (observed, probs.mean(), tol)

  within(first.mean(), p_star)
  agree = np.where(p_star >= 0.5, first, 1 - first)
  best = np.maximum(p_star, 1 - p_star)
  within(agree.mean(), best)
  ceiling = annotators.agreement_ceiling(p_star)
  print(f"\nlabel noise ceiling E[max(P*,1-P*)] = {ceiling:.4f} over {n} "
        f"comparisons; observed agreement with P* = {agree.mean():.4f}")
  assert 0.7 <= ceiling <= 0.85

  per_type = np.stack([annotators.type_preferences(p, a, b)
                       for p, (a, b) in zip(prompts, texts)])
  types = np.array([annotators.TYPE_NAMES.index(
      annotators.WORKER_TYPE[r["worker"]]) for r in rows])
  for k, name in enumerate(annotators.TYPE_NAMES):
    mask = types == k
    assert mask.sum() > 200, name
    within(first[mask].mean(), per_type[mask, k])
  # Workers are drawn uniformly, so types appear with probability ρ_k.
  within(np.mean(types == 0), np.full(n, annotators.TYPE_PROBS[0]))


def test_annotator_types_disagree_on_many_comparisons(world):
  _, _, _, comparisons = world
  rows = [r for rs in comparisons.values() for r in rs][:1000]
  disagree = 0
  for r in rows:
    p = annotators.type_preferences(r["info"], r["summaries"][0]["text"],
                                    r["summaries"][1]["text"])
    disagree += bool(np.any(p > 0.6) and np.any(p < 0.4))
  print(f"\ntypes confidently disagree on {disagree / len(rows):.1%} of pairs")
  assert disagree / len(rows) > 0.1


def test_cli_writes_files_and_reports_progress(tmp_path, capsys):
  assert synthetic.main(["--out", str(tmp_path), "--seed", "1", "--size",
                         "30", "--comparisons", "40"]) == 0
  captured = capsys.readouterr()
  assert "posts 30/30" in captured.err and "comparisons 40/40" in captured.err
  assert "comparisons {'train': 32, 'valid1': 4, 'valid2': 4}" in captured.out
  assert len(_read_jsonl(tmp_path / "comparisons" / "batch3.json")) == 40


@pytest.mark.parametrize("args, message", [
    (["--size", "2"], "size must be >= 3, got 2"),
    (["--seed", "-1"], "seed must be >= 0, got -1"),
    (["--comparisons", "0"], "num_comparisons must be >= 3, got 0"),
    (["--batch_size", "0"], "batch_size must be >= 1, got 0"),
    (["--size", "ten"], "invalid int value: 'ten'"),
])
def test_cli_rejects_bad_arguments(tmp_path, capsys, args, message):
  with pytest.raises(SystemExit) as exc:
    synthetic.main(["--out", str(tmp_path)] + args)
  assert exc.value.code == 2
  assert message in capsys.readouterr().err


def test_out_must_be_a_directory(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(ValueError, match="exists and is not a directory"):
    synthetic.generate(str(path), seed=0, size=5)
