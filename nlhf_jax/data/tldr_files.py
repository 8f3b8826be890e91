"""OpenAI's summarize-from-feedback files, parsed line by line (pure Python).

The one parser of the raw TL;DR files, shared by the TFDS builders
(`tldr_builders`), the TensorFlow-free JSONL sources (`jsonl_sources`) and
vocabulary training (`vocab`), so every path reads the same rows:

* `tldr_3_filtered/{train,valid,test}.jsonl`: OpenAI's filtered TL;DR SFT
  set, one post per line with string fields `id`, `subreddit`, `title`,
  `post`, `summary` (verbatim, the summary has no leading space).
* `comparisons/*.json` (JSON lines despite the name): the human comparisons,
  each row owned by the split in its `split` field (train / valid1 /
  valid2). A valid row becomes a `tldr_comparisons` example: `id`,
  `subreddit`, `title`, `post` (from `info`), `summary_0`, `summary_1`
  (`summaries[i].text`, verbatim with their leading space), `policy_0`,
  `policy_1`, `note_0`, `note_1` (`""` where the note is null or missing),
  `choice` (index of the preferred summary, as in the file), `worker`,
  `batch`, `confidence` (`extra.confidence`; `MISSING_CONFIDENCE` = -1 where
  absent or null).

Every line is classified as a `Row`: emitted (`example`) or skipped with a
`RowError` whose `reason` is one of `empty_line`, `bad_utf8`, `bad_json`,
`not_object`, `missing_field`, `wrong_type`, `empty_post`, `empty_summary`
and, for comparisons only, `unknown_split`, `cnndm` (CNN/DM articles, out
of scope), `bad_summaries` (not exactly two summaries), `bad_choice` (not
0/1), `bad_confidence` (present but not an integer). Comparison lines that
cannot be given a split (unparseable, unknown split, CNN/DM) are owned by
the pseudo-split `UNASSIGNED`. A row's `where` names the file relative to
the data folder and the line, e.g. `comparisons/batch3.json:51`, and
`SplitTally` keeps the first few `where: detail` messages per reason, e.g.
`comparisons/batch3.json:51: not JSON: Expecting value (char 0)`.

Paths may be `str`, `pathlib.Path` or `etils.epath.Path` (anything with
`/`, `open`, `glob`, `exists` and `relative_to`); nothing here imports
TensorFlow.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

FILTERED_DIR = "tldr_3_filtered"
COMPARISONS_DIR = "comparisons"
# TFDS split -> file name in `tldr_3_filtered/`.
FILTERED_FILES = {
    "train": "train.jsonl",
    "validation": "valid.jsonl",
    "test": "test.jsonl",
}
COMPARISON_SPLITS = ("train", "valid1", "valid2")
UNASSIGNED = "unassigned"
MISSING_CONFIDENCE = -1
FILTERED_FIELDS = ("id", "subreddit", "title", "post", "summary")
INFO_FIELDS = ("id", "subreddit", "title", "post")
_MAX_EXAMPLES_PER_REASON = 3


class RowError(ValueError):
  """A malformed input row; `reason` is the counter key."""

  def __init__(self, reason: str, detail: str):
    super().__init__(f"{reason}: {detail}")
    self.reason = reason
    self.detail = detail


class Row(NamedTuple):
  """One classified input line: emitted (`example`) or skipped (`error`)."""

  owner: str  # the split the line counts for, or UNASSIGNED
  where: str  # "relative/path:line"
  example: dict[str, Any] | None
  error: RowError | None
  notes: Sequence[str] = ()


@dataclasses.dataclass
class SplitTally:
  """Counts for one split: every line is emitted or skipped with a reason."""

  lines: int = 0
  emitted: int = 0
  skipped: collections.Counter = dataclasses.field(
      default_factory=collections.Counter
  )
  notes: collections.Counter = dataclasses.field(
      default_factory=collections.Counter
  )
  examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)

  def add(self, row: Row) -> None:
    """Counts one classified line."""
    self.lines += 1
    if row.error is None:
      self.emitted += 1
      self.notes.update(row.notes)
    else:
      self.skip(row.error.reason, row.where, row.error.detail)

  def skip(self, reason: str, where: str, detail: str) -> None:
    """Counts a skipped line and keeps the first few locations per reason."""
    self.skipped[reason] += 1
    shown = self.examples.setdefault(reason, [])
    if len(shown) < _MAX_EXAMPLES_PER_REASON:
      shown.append(f"{where}: {detail}")

  def as_dict(self) -> dict[str, Any]:
    return {
        "lines": self.lines,
        "emitted": self.emitted,
        "skipped": dict(sorted(self.skipped.items())),
        "notes": dict(sorted(self.notes.items())),
        "examples": self.examples,
    }


# ------------------------------ row parsing -------------------------------


def load_object(line: bytes | str) -> dict[str, Any]:
  """Parses one JSON line (bytes are decoded as UTF-8) or raises RowError."""
  if isinstance(line, bytes):
    try:
      line = line.decode("utf-8")
    except UnicodeDecodeError as e:
      raise RowError("bad_utf8", f"invalid UTF-8 at byte {e.start}") from None
  if not line.strip():
    raise RowError("empty_line", "blank line")
  try:
    obj = json.loads(line)
  except json.JSONDecodeError as e:
    raise RowError("bad_json", f"not JSON: {e.msg} (char {e.pos})") from None
  if not isinstance(obj, dict):
    raise RowError("not_object", f"JSON {type(obj).__name__}, not an object")
  return obj


def _get_str(obj: dict[str, Any], key: str, where: str = "") -> str:
  if key not in obj or obj[key] is None:
    raise RowError("missing_field", f"no {where}{key!r}")
  if not isinstance(obj[key], str):
    raise RowError(
        "wrong_type", f"{where}{key!r} is {type(obj[key]).__name__}, not str"
    )
  return obj[key]


def parse_filtered_line(line: bytes | str) -> dict[str, str]:
  """Validates one `tldr_3_filtered` line.

  Args:
    line: a JSON line with string fields id, subreddit, title, post, summary.

  Returns:
    The five fields, verbatim.

  Raises:
    RowError: with a reason from the module docstring.
  """
  return parse_filtered(load_object(line))


def parse_filtered(obj: dict[str, Any]) -> dict[str, str]:
  """`parse_filtered_line` on an already parsed object."""
  row = {k: _get_str(obj, k) for k in FILTERED_FIELDS}
  if not row["post"].strip():
    raise RowError("empty_post", "post is empty")
  if not row["summary"].strip():
    raise RowError("empty_summary", "summary is empty")
  return row


def is_cnndm(obj: dict[str, Any]) -> bool:
  """True for CNN/DM comparison rows (article instead of a Reddit post)."""
  info = obj.get("info")
  if isinstance(info, dict) and (
      info.get("article") is not None or info.get("site") is not None
  ):
    return True
  return "cnndm" in str(obj.get("batch", ""))


def comparison_owner(obj: dict[str, Any]) -> str:
  """Returns the split a parsed comparison row belongs to.

  Args:
    obj: a parsed comparison line.

  Returns:
    One of `COMPARISON_SPLITS`.

  Raises:
    RowError: `cnndm` for CNN/DM rows, `unknown_split` for a missing or
      unknown `split`.
  """
  if is_cnndm(obj):
    raise RowError("cnndm", f"CNN/DM row (batch {obj.get('batch')!r})")
  split = obj.get("split")
  if split not in COMPARISON_SPLITS:
    raise RowError(
        "unknown_split", f"split {split!r} not in {list(COMPARISON_SPLITS)}"
    )
  return split


def _summary_fields(summaries: Any, notes: list[str]) -> dict[str, str]:
  if not isinstance(summaries, list) or len(summaries) != 2:
    raise RowError("bad_summaries", "summaries is not a list of two entries")
  out = {}
  for i, s in enumerate(summaries):
    if not isinstance(s, dict):
      raise RowError("bad_summaries", f"summaries[{i}] is not an object")
    out[f"summary_{i}"] = _get_str(s, "text", f"summaries[{i}].")
    out[f"policy_{i}"] = _get_str(s, "policy", f"summaries[{i}].")
    note = s.get("note")
    if note is None:
      notes.append("null_note")
      note = ""
    elif not isinstance(note, str):
      raise RowError("wrong_type", f"summaries[{i}].note is not a string")
    out[f"note_{i}"] = note
    if not out[f"summary_{i}"].strip():
      raise RowError("empty_summary", f"summaries[{i}].text is empty")
  return out


def _confidence(obj: dict[str, Any], notes: list[str]) -> int:
  extra = obj.get("extra")
  value = extra.get("confidence") if isinstance(extra, dict) else None
  if value is None:
    notes.append("missing_confidence")
    return MISSING_CONFIDENCE
  if isinstance(value, bool) or not isinstance(value, int):
    raise RowError("bad_confidence", f"extra.confidence={value!r}")
  return value


def parse_comparison(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
  """Validates one TL;DR comparison row (already owned by a split).

  Args:
    obj: a parsed comparison line.

  Returns:
    (example with the `tldr_comparisons` features, list of note keys such as
    `null_note` / `missing_confidence` for the report).

  Raises:
    RowError: with a reason from the module docstring.
  """
  notes = []
  info = obj.get("info")
  if not isinstance(info, dict):
    raise RowError("missing_field", "no 'info' object")
  example = {k: _get_str(info, k, "info.") for k in INFO_FIELDS}
  example["worker"] = _get_str(obj, "worker")
  example["batch"] = _get_str(obj, "batch")
  if "summaries" not in obj:
    raise RowError("missing_field", "no 'summaries'")
  if "choice" not in obj:
    raise RowError("missing_field", "no 'choice'")
  choice = obj["choice"]
  if isinstance(choice, bool) or choice not in (0, 1):
    raise RowError("bad_choice", f"choice={choice!r} not in (0, 1)")
  if not example["post"].strip():
    raise RowError("empty_post", "info.post is empty")
  example.update(_summary_fields(obj["summaries"], notes))
  example["choice"] = int(choice)
  example["confidence"] = _confidence(obj, notes)
  return example, notes


# ------------------------------ file reading ------------------------------


def as_path(path: Any) -> Any:
  """`path` itself if it is a path object, else a `pathlib.Path`."""
  if isinstance(path, (str, os.PathLike)) and not hasattr(path, "glob"):
    return pathlib.Path(path)
  return path


def numbered_lines(path: Any, root: Any) -> Iterator[tuple[str, bytes]]:
  """Yields ("path/relative/to/root:line_number", raw line) for `path`."""
  path, root = as_path(path), as_path(root)
  rel = str(path.relative_to(root))
  with path.open("rb") as f:
    for i, line in enumerate(f, start=1):
      yield f"{rel}:{i}", line


def comparison_files(root: Any) -> list[Any]:
  """Returns the sorted `comparisons/*.json` files under `root`."""
  folder = as_path(root) / COMPARISONS_DIR
  return sorted(folder.glob("*.json")) if folder.exists() else []


def filtered_rows(root: Any, split: str) -> Iterator[Row]:
  """Classifies every line of the `tldr_3_filtered` file of `split`.

  Args:
    root: the folder holding `tldr_3_filtered/`.
    split: a key of `FILTERED_FILES` (train / validation / test).

  Yields:
    One `Row` per line, owned by `split`.
  """
  root = as_path(root)
  path = root / FILTERED_DIR / FILTERED_FILES[split]
  for where, line in numbered_lines(path, root):
    try:
      yield Row(split, where, parse_filtered_line(line), None)
    except RowError as e:
      yield Row(split, where, None, e)


def classify_comparison(line: bytes | str, where: str) -> Row:
  """One comparison line as a `Row` (owned by its split or UNASSIGNED)."""
  try:
    obj = load_object(line)
    owner = comparison_owner(obj)
  except RowError as e:
    return Row(UNASSIGNED, where, None, e)
  try:
    example, notes = parse_comparison(obj)
    return Row(owner, where, example, None, notes)
  except RowError as e:
    return Row(owner, where, None, e)


def comparison_rows(root: Any) -> Iterator[Row]:
  """Classifies every line of `root/comparisons/*.json` (files sorted)."""
  root = as_path(root)
  for path in comparison_files(root):
    for where, line in numbered_lines(path, root):
      yield classify_comparison(line, where)


def read_split(
    rows: Iterable[Row], split: str
) -> tuple[list[dict[str, Any]], dict[str, SplitTally]]:
  """The valid examples of `split` in file order, and the counts.

  Args:
    rows: classified lines (`filtered_rows`, `comparison_rows`).
    split: the split to keep.

  Returns:
    (examples of `split`, {owner: SplitTally} for every owner seen: `split`,
    the other splits and `UNASSIGNED`).
  """
  tallies: dict[str, SplitTally] = {split: SplitTally()}
  examples = []
  for row in rows:
    tallies.setdefault(row.owner, SplitTally()).add(row)
    if row.owner == split and row.error is None:
      examples.append(row.example)
  return examples, tallies
