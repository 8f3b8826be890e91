"""Generator of the synthetic TL;DR world in the exact OpenAI file formats.

    python -m nlhf_jax.data.synthetic --out DIR --seed 0 --size 2000

writes

    DIR/tldr_3_filtered/{train,valid,test}.jsonl   one post per line:
        {"id": "t3_…", "subreddit", "title", "post", "summary"}
    DIR/comparisons/batch3.json, batch4.json, …     JSON lines:
        {"info": {"id", "post", "title", "subreddit"},
         "summaries": [{"text": " …", "policy", "note"}, {…}],
         "choice": 0|1, "worker", "batch", "split": train|valid1|valid2,
         "extra": {"confidence": 1..9} or {}}

Posts are split 90/5/5 into train/valid/test; comparisons 80/10/10 into
train/valid1/valid2 and drawn from the train/valid/test posts respectively.
Each comparison pits two different summary policies
(`synthetic_text.POLICIES`) on one post and is labelled by one worker drawn
from the hidden annotator population (`annotators`). The same arguments give
byte-identical files: post i uses the generator seeded with (seed, 0, i),
comparison j the one seeded with (seed, 1, j). Pure Python + numpy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from typing import Callable, Sequence

import numpy as np

from nlhf_jax.data import annotators
from nlhf_jax.data import synthetic_text as st

POST_SPLITS = (("train", 0.90), ("valid", 0.05), ("test", 0.05))
# Comparison split -> (fraction, post split its posts come from).
COMPARISON_SPLITS = (("train", 0.8, "train"), ("valid1", 0.1, "valid"),
                     ("valid2", 0.1, "test"))
FIRST_BATCH = 3  # OpenAI's TL;DR comparison files start at batch3.
NOTE_PROB = 0.5
MISSING_CONFIDENCE_PROB = 0.1
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_BATCH_RE = re.compile(r"batch\d+\.json")
_NOTES = ("Post is about: {core}.", "Main question: {ask}",
          "Unclear what happened.", "OP wants advice.")


@dataclasses.dataclass(frozen=True)
class Post:
  """One generated post with its hidden situation."""
  id: str
  situation: st.Situation
  title: str
  post: str
  summary: str

  def record(self) -> dict[str, str]:
    """The tldr_3_filtered row (field order as OpenAI's files)."""
    return {"id": self.id, "subreddit": self.situation.subreddit,
            "title": self.title, "post": self.post, "summary": self.summary}


@dataclasses.dataclass(frozen=True)
class GenerationResult:
  """What `generate` wrote: file paths and row counts."""
  posts_per_split: dict[str, int]
  comparisons_per_split: dict[str, int]
  files: tuple[str, ...]


def _split_counts(total: int, fractions: Sequence[float]) -> list[int]:
  """Rounds `total * fractions` so each part is >= 1 and they sum to total."""
  counts = [max(1, int(round(total * f))) for f in fractions[1:]]
  return [total - sum(counts)] + counts


def _post_id(rng: np.random.Generator, taken: set[str]) -> str:
  while True:
    post_id = "t3_" + "".join(_BASE36[i] for i in rng.integers(36, size=6))
    if post_id not in taken:
      taken.add(post_id)
      return post_id


def make_post(seed: int, index: int, taken_ids: set[str]) -> Post:
  """Generates post `index` of the world with `seed` (adds its id to taken)."""
  rng = np.random.default_rng([seed, 0, index])
  situation = st.sample_situation(rng)
  post = st.write_post(rng, situation)
  return Post(id=_post_id(rng, taken_ids), situation=situation,
              title=st.write_title(rng, situation), post=post,
              summary=st.write_summary(rng, situation, "ref"))


def _note(rng: np.random.Generator, situation: st.Situation) -> str | None:
  if rng.random() >= NOTE_PROB:
    return None
  template = _NOTES[int(rng.integers(len(_NOTES)))]
  return template.format(core=st.core_phrase(situation),
                         ask=situation.get("ask").short)


def make_comparison(seed: int, index: int, post: Post, split: str,
                    batch: str) -> dict:
  """Generates comparison `index`: two policies' summaries and one label."""
  rng = np.random.default_rng([seed, 1, index])
  policies = [st.POLICIES[i] for i in
              rng.choice(len(st.POLICIES), size=2, replace=False)]
  texts = [st.write_summary(rng, post.situation, p, post=post.post)
           for p in policies]
  facts = post.situation.facts
  label = annotators.label_from_features(
      rng, annotators.summary_features(facts, texts[0]),
      annotators.summary_features(facts, texts[1]))
  extra = {}
  if rng.random() >= MISSING_CONFIDENCE_PROB:
    extra["confidence"] = label.confidence
  return {
      "info": {"id": post.id, "post": post.post, "title": post.title,
               "subreddit": post.situation.subreddit},
      "summaries": [{"text": " " + t, "policy": p,
                     "note": _note(rng, post.situation)}
                    for t, p in zip(texts, policies)],
      "choice": label.choice, "worker": label.worker, "batch": batch,
      "split": split, "extra": extra,
  }


def _write_jsonl(path: str, rows: Sequence[dict]) -> None:
  with open(path, "w", encoding="utf-8", newline="\n") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")


def _check_args(out_dir: str, seed: int, size: int, num_comparisons: int,
                batch_size: int) -> None:
  """Raises ValueError naming the bad argument."""
  for name, value, low in (("seed", seed, 0), ("size", size, 3),
                           ("num_comparisons", num_comparisons, 3),
                           ("batch_size", batch_size, 1)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low:
      raise ValueError(f"{name} must be >= {low}, got {value}")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f"out {out_dir!r} exists and is not a directory")


def _make_posts(seed: int, size: int,
                say: Callable[[str], None]) -> dict[str, list[Post]]:
  """Posts 0..size-1, split in order into train/valid/test."""
  every = max(1, size // 5)
  taken, posts = set(), []
  for i in range(size):
    posts.append(make_post(seed, i, taken))
    if (i + 1) % every == 0 or i + 1 == size:
      say(f"posts {i + 1}/{size}")
  by_split, start = {}, 0
  counts = _split_counts(size, [f for _, f in POST_SPLITS])
  for (name, _), n in zip(POST_SPLITS, counts):
    by_split[name], start = posts[start:start + n], start + n
  return by_split


def _make_comparisons(seed: int, num: int, batch_size: int,
                      by_split: dict[str, list[Post]],
                      say: Callable[[str], None]) -> list[dict]:
  """Comparison rows; splits are shuffled across batches like OpenAI's."""
  counts = _split_counts(num, [f for _, f, _ in COMPARISON_SPLITS])
  splits = np.repeat(np.arange(len(COMPARISON_SPLITS)), counts)
  splits = np.random.default_rng([seed, 2]).permutation(splits)
  every = max(1, num // 10)
  rows = []
  for j, k in enumerate(splits):
    split, _, post_split = COMPARISON_SPLITS[k]
    pool = by_split[post_split]
    post = pool[int(np.random.default_rng([seed, 3, j]).integers(len(pool)))]
    batch = f"batch{FIRST_BATCH + j // batch_size}"
    rows.append(make_comparison(seed, j, post, split, batch))
    if (j + 1) % every == 0 or j + 1 == num:
      say(f"comparisons {j + 1}/{num}")
  return rows


def generate(out_dir: str, seed: int, size: int,
             num_comparisons: int | None = None, batch_size: int = 1000,
             progress: Callable[[str], None] | None = None) -> GenerationResult:
  """Writes the synthetic world's files under `out_dir`.

  Args:
    out_dir: output directory (created; stale `comparisons/batch*.json`
      from an earlier run are removed so the directory matches the args).
    seed: non-negative integer seed.
    size: number of posts (>= 3: every post split gets at least one).
    num_comparisons: number of comparisons (>= 3); default 2 * size.
    batch_size: comparisons per `batchN.json` file.
    progress: called with a short status line now and then (e.g. print).

  Returns:
    A `GenerationResult` with the counts and written paths.
  """
  num_comparisons = 2 * size if num_comparisons is None else num_comparisons
  _check_args(out_dir, seed, size, num_comparisons, batch_size)
  say = progress or (lambda _: None)
  by_split = _make_posts(seed, size, say)
  rows = _make_comparisons(seed, num_comparisons, batch_size, by_split, say)

  files = []
  tldr_dir = os.path.join(out_dir, "tldr_3_filtered")
  os.makedirs(tldr_dir, exist_ok=True)
  for name, split_posts in by_split.items():
    files.append(os.path.join(tldr_dir, f"{name}.jsonl"))
    _write_jsonl(files[-1], [p.record() for p in split_posts])
  comp_dir = os.path.join(out_dir, "comparisons")
  os.makedirs(comp_dir, exist_ok=True)
  for stale in sorted(os.listdir(comp_dir)):
    if _BATCH_RE.fullmatch(stale):
      os.remove(os.path.join(comp_dir, stale))
  for b in range(0, num_comparisons, batch_size):
    files.append(os.path.join(comp_dir,
                              f"batch{FIRST_BATCH + b // batch_size}.json"))
    _write_jsonl(files[-1], rows[b:b + batch_size])
  return GenerationResult(
      posts_per_split={n: len(p) for n, p in by_split.items()},
      comparisons_per_split={name: sum(r["split"] == name for r in rows)
                             for name, _, _ in COMPARISON_SPLITS},
      files=tuple(files))


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns the process exit code."""
  parser = argparse.ArgumentParser(
      prog="python -m nlhf_jax.data.synthetic",
      description="Write the synthetic TL;DR world (OpenAI file formats).")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
  parser.add_argument("--size", type=int, default=2000,
                      help="number of posts (>= 3)")
  parser.add_argument("--comparisons", type=int, default=None,
                      help="number of comparisons (default 2 * size)")
  parser.add_argument("--batch_size", type=int, default=1000,
                      help="comparisons per batchN.json file")
  parser.add_argument("--quiet", action="store_true", help="no progress lines")
  args = parser.parse_args(argv)
  start = time.perf_counter()

  def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

  try:
    result = generate(args.out, args.seed, args.size, args.comparisons,
                      args.batch_size, progress=None if args.quiet else say)
  except ValueError as e:
    parser.error(str(e))
  print(f"wrote {len(result.files)} files to {args.out} in "
        f"{time.perf_counter() - start:.1f}s: posts {result.posts_per_split}, "
        f"comparisons {result.comparisons_per_split}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
