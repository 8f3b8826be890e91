"""Fixtures for the TL;DR data tests: small raw files in OpenAI's formats.

`write_manual_dir` writes `tldr_3_filtered/*.jsonl` and `comparisons/*.json`
with good rows and one bad row per skip reason, and records for every line
what should become of it (the split it counts for and "emitted" or the skip
reason), so tests can check the builders' accounting line by line. The
session fixture `tldr_env` prepares both TFDS datasets once and trains a
small SentencePiece model on the same text. TensorFlow is imported lazily so
other tests under tests/data do not pay for it.
"""

import collections
import dataclasses
import json
import pathlib
import random
from typing import Any

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
REAL_SAMPLE = REPO.parent / "shared" / "data" / "tldr_real_sample"

_WORDS = (
    "my boyfriend and I have been together for three years but lately he "
    "seems distant at work the landlord wants rent early so should I move "
    "out or talk to him first café naïve résumé 😀 ok"
).split()


@dataclasses.dataclass
class ManualDir:
  """Raw files written for a test, and what each line should become."""

  root: pathlib.Path
  # dataset -> split -> Counter({"emitted": n, reason: n, ...})
  expected: dict[str, dict[str, collections.Counter]]
  # split -> good rows, as written (filtered and comparison objects)
  filtered: dict[str, list[dict[str, Any]]]
  comparisons: dict[str, list[dict[str, Any]]]


def _sentence(rng: random.Random, n: int) -> str:
  return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + "."


def filtered_row(
    rng: random.Random, key: str, *, paragraphs: int = 2, newlines: bool = True
) -> dict[str, str]:
  sep = "\n\n" if newlines else " "
  post = sep.join(_sentence(rng, 10) for _ in range(paragraphs))
  return {
      "id": f"t3_{key}",
      "subreddit": rng.choice(["relationships", "legaladvice", "personalfinance"]),
      "title": _sentence(rng, 6),
      "post": post,
      "summary": _sentence(rng, 8)[:-1],
  }


def comparison_row(
    rng: random.Random, post: dict[str, str], split: str, **overrides: Any
) -> dict[str, Any]:
  row = {
      "info": {k: post[k] for k in ("id", "post", "title", "subreddit")},
      "summaries": [
          {"text": " " + _sentence(rng, 7), "policy": "sup4_ppo_rm3_kl10",
           "note": _sentence(rng, 4)},
          {"text": " " + _sentence(rng, 7), "policy": "ref", "note": None},
      ],
      "choice": rng.randint(0, 1),
      "worker": "w" + str(rng.randint(100, 999)),
      "batch": "batch9",
      "split": split,
      "extra": {"confidence": rng.randint(1, 9)},
  }
  row.update(overrides)
  return row


class _Writer:
  """Collects lines per file and the expected outcome of each."""

  def __init__(self, root: pathlib.Path):
    self.root = root
    self.files: dict[str, list[bytes]] = collections.defaultdict(list)
    self.expected = collections.defaultdict(
        lambda: collections.defaultdict(collections.Counter)
    )

  def add(self, dataset: str, rel: str, split: str, line: Any, outcome: str):
    if isinstance(line, (dict, list)):
      line = json.dumps(line)
    if isinstance(line, str):
      line = line.encode("utf-8")
    self.files[rel].append(line)
    self.expected[dataset][split][outcome] += 1

  def flush(self):
    for rel, lines in self.files.items():
      path = self.root / rel
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(b"".join(line + b"\n" for line in lines))


def _write_filtered(w: _Writer, rng: random.Random) -> dict[str, list[dict]]:
  good = {}
  sizes = {"train": 10, "validation": 3, "test": 3}
  files = {"train": "train", "validation": "valid", "test": "test"}
  for split, n in sizes.items():
    rows = [filtered_row(rng, f"{split}{i}", paragraphs=1 + i % 3)
            for i in range(n)]
    if split == "train":
      rows[0] = filtered_row(rng, "long", paragraphs=25)
      rows[1] = filtered_row(rng, "flat", paragraphs=12, newlines=False)
    good[split] = rows
    rel = f"tldr_3_filtered/{files[split]}.jsonl"
    for row in rows:
      w.add("tldr_filtered", rel, split, row, "emitted")
  rel, bad = "tldr_3_filtered/train.jsonl", filtered_row(rng, "bad")
  w.add("tldr_filtered", rel, "train", json.dumps(bad)[:60], "bad_json")
  w.add("tldr_filtered", rel, "train", {**bad, "summary": ""}, "empty_summary")
  w.add("tldr_filtered", rel, "train", {**bad, "post": " \n"}, "empty_post")
  w.add("tldr_filtered", rel, "train", {**bad, "title": 5}, "wrong_type")
  missing = {k: v for k, v in bad.items() if k != "summary"}
  w.add("tldr_filtered", rel, "train", missing, "missing_field")
  w.add("tldr_filtered", rel, "train", "", "empty_line")
  w.add("tldr_filtered", rel, "train", [1, 2], "not_object")
  w.add("tldr_filtered", rel, "train", b'{"id": "\xff\xfe"}', "bad_utf8")
  w.add("tldr_filtered", "tldr_3_filtered/valid.jsonl", "validation",
        json.dumps(bad)[:-3], "bad_json")
  return good


def _write_comparisons(
    w: _Writer, rng: random.Random, posts: list[dict[str, str]]
) -> dict[str, list[dict]]:
  good = collections.defaultdict(list)

  def add_good(rel: str, row: dict):
    w.add("tldr_comparisons", rel, row["split"], row, "emitted")
    good[row["split"]].append(row)

  rel = "comparisons/batch3.json"
  for i, split in enumerate(["train"] * 5 + ["valid1"] * 3 + ["valid2"] * 3):
    row = comparison_row(rng, posts[i % len(posts)], split)
    if i == 1:
      del row["extra"]  # missing confidence
    if i == 9:
      row["extra"] = {"confidence": None}
    add_good(rel, row)
  post = posts[0]
  bad = [
      ("unassigned", "unknown_split", comparison_row(rng, post, "test")),
      ("unassigned", "bad_json", json.dumps(comparison_row(rng, post, "train"))[:80]),
      ("unassigned", "empty_line", ""),
      ("train", "bad_choice", comparison_row(rng, post, "train", choice=2)),
      ("train", "bad_summaries", comparison_row(
          rng, post, "train",
          summaries=[{"text": " a", "policy": "ref", "note": None}] * 3)),
      ("valid1", "empty_summary", comparison_row(
          rng, post, "valid1",
          summaries=[{"text": " ", "policy": "ref", "note": None},
                     {"text": " b", "policy": "ref", "note": None}])),
      ("valid2", "bad_confidence", comparison_row(
          rng, post, "valid2", extra={"confidence": "high"})),
  ]
  no_worker = comparison_row(rng, post, "valid2")
  del no_worker["worker"]
  bad.append(("valid2", "missing_field", no_worker))
  for split, reason, line in bad:
    w.add("tldr_comparisons", rel, split, line, reason)
  cnndm = {"id": "cnn-1", "site": "dailymail", "title": "T", "article": "A b."}
  for rel, batch in (("comparisons/cnndm0.json", "cnndm0"),
                     ("comparisons/batch0_cnndm.json", "batch0_cnndm")):
    row = comparison_row(rng, post, "valid1", batch=batch, info=cnndm)
    w.add("tldr_comparisons", rel, "unassigned", row, "cnndm")
  rel = "comparisons/batch22.json"
  add_good(rel, comparison_row(rng, posts[3], "train", batch="batch22"))
  add_good(rel, comparison_row(rng, posts[4], "valid2", batch="batch22"))
  return dict(good)


def write_manual_dir(root: pathlib.Path, seed: int = 0) -> ManualDir:
  """Writes both raw datasets under `root` (see module docstring)."""
  rng = random.Random(seed)
  w = _Writer(root)
  filtered = _write_filtered(w, rng)
  comparisons = _write_comparisons(w, rng, filtered["train"])
  w.flush()
  expected = {k: dict(v) for k, v in w.expected.items()}
  return ManualDir(root, expected, filtered, comparisons)


@dataclasses.dataclass
class TldrEnv:
  manual: ManualDir
  data_dir: pathlib.Path
  reports: dict[str, Any]
  sp_model: pathlib.Path


@pytest.fixture(scope="session")
def tldr_env(tmp_path_factory) -> TldrEnv:
  """Raw fixture files, both TFDS datasets prepared, a small SP model."""
  from nlhf_jax.data import tldr_builders  # pylint: disable=g-import-not-at-top
  from nlhf_jax.data import vocab  # pylint: disable=g-import-not-at-top

  root = tmp_path_factory.mktemp("tldr")
  manual = write_manual_dir(root / "manual")
  reports = tldr_builders.prepare(manual.root, root / "tfds")
  paths = sorted((manual.root / "tldr_3_filtered").glob("*.jsonl"))
  paths += sorted((manual.root / "comparisons").glob("*.json"))
  texts, _ = vocab.texts_from_jsonl(paths)
  model = vocab.train_sentencepiece(
      texts, root / "sp" / "tldr", vocab_size=320, keep_newlines=True
  )
  return TldrEnv(manual, root / "tfds", reports, model)


@pytest.fixture(scope="session")
def tldr_testdata():
  """The row/file writers of this module (test files cannot import it)."""
  import types  # pylint: disable=g-import-not-at-top

  return types.SimpleNamespace(
      write_manual_dir=write_manual_dir, filtered_row=filtered_row,
      comparison_row=comparison_row, REAL_SAMPLE=REAL_SAMPLE,
  )
