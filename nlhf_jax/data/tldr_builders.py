"""TFDS builders for OpenAI's Reddit TL;DR files, read from a manual directory.

Two datasets, prepared offline from files the user downloads once:

* `tldr_filtered` (splits train / validation / test): OpenAI's filtered TL;DR
  SFT set, `<manual_dir>/tldr_3_filtered/{train,valid,test}.jsonl`. Features
  (all text): `id`, `subreddit`, `title`, `post`, `summary` (verbatim, the
  summary has no leading space).
* `tldr_comparisons` (splits train / valid1 / valid2, from each row's `split`):
  the human comparisons of `summarize-from-feedback`,
  `<manual_dir>/comparisons/*.json` (JSON lines despite the name). Features:
  `id`, `subreddit`, `title`, `post` (from `info`), `summary_0`, `summary_1`
  (`summaries[i].text`, verbatim with their leading space), `policy_0`,
  `policy_1`, `note_0`, `note_1` (`""` where the note is null or missing),
  `choice` (int32, index of the preferred summary, as in the file), `worker`,
  `batch`, `confidence` (int32, `extra.confidence`; `MISSING_CONFIDENCE` = -1
  where absent or null).

Every input line is either emitted or skipped with a reason, and the counts
are logged at the end of each split and returned by `preparation_report()`;
`prepare()` also writes them to `<data_dir>/<name>/<version>/
preparation_report.json`. Skip reasons: `empty_line`, `bad_utf8`,
`bad_json`, `not_object`, `missing_field`, `wrong_type`, `empty_post`,
`empty_summary` and, for comparisons only, `unknown_split`, `cnndm` (CNN/DM
articles, out of scope), `bad_summaries` (not exactly two summaries),
`bad_choice` (not 0/1), `bad_confidence` (present but not an integer).
Comparison rows that cannot be given a split (unparseable, unknown split,
CNN/DM) are reported under the pseudo-split `unassigned`. Emitted rows with
a null note or a missing confidence are counted under `notes`. A split with
no valid row is not written (TFDS cannot write empty splits) but is still
in the report.

CLI: `python -m nlhf_jax.data.tldr_builders --manual_dir M --data_dir D`.
"""

import argparse
import collections
import dataclasses
import inspect
import json
import sys
from typing import Any, Iterator, NamedTuple, Sequence

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

_BLOB = "https://openaipublic.blob.core.windows.net/summarize-from-feedback"
FILTERED_URL = _BLOB + "/datasets/tldr_3_filtered/{file}"
COMPARISONS_URL = _BLOB + "/dataset/comparisons/"

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
REPORT_FILE = "preparation_report.json"
_MAX_EXAMPLES_PER_REASON = 3
_FILTERED_FIELDS = ("id", "subreddit", "title", "post", "summary")
_INFO_FIELDS = ("id", "subreddit", "title", "post")

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download OpenAI's summarize-from-feedback files (public, no account) into the
manual directory (`--manual_dir`, default `<data_dir>/downloads/manual`):

  <manual_dir>/{FILTERED_DIR}/{{train,valid,test}}.jsonl from
      {FILTERED_URL.format(file="{train,valid,test}.jsonl")}
  <manual_dir>/{COMPARISONS_DIR}/*.json (batch3.json ... batch20.json,
      batch22.json; CNN/DM files are skipped) from
      {COMPARISONS_URL}
      e.g. cd <manual_dir> && azcopy copy "{_BLOB}/dataset/*" . --recursive
"""

_IS_MAIN = __name__ == "__main__"


class RowError(ValueError):
  """A malformed input row; `reason` is the counter key."""

  def __init__(self, reason: str, detail: str):
    super().__init__(f"{reason}: {detail}")
    self.reason = reason
    self.detail = detail


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
    raise RowError("bad_json", f"{e.msg} (char {e.pos})") from None
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
  obj = load_object(line)
  row = {k: _get_str(obj, k) for k in _FILTERED_FIELDS}
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
  example = {k: _get_str(info, k, "info.") for k in _INFO_FIELDS}
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


def numbered_lines(
    path: epath.Path, root: epath.Path
) -> Iterator[tuple[str, bytes]]:
  """Yields ("path/relative/to/root:line_number", raw line) for `path`."""
  rel = str(path.relative_to(root))
  with path.open("rb") as f:
    for i, line in enumerate(f, start=1):
      yield f"{rel}:{i}", line


# ----------------------------- file checks --------------------------------


def missing_filtered_files(manual_dir: epath.PathLike) -> list[str]:
  """Lists the missing `tldr_3_filtered` files with their download URLs."""
  root = epath.Path(manual_dir) / FILTERED_DIR
  return [
      f"{root / name}  (download {FILTERED_URL.format(file=name)})"
      for name in FILTERED_FILES.values()
      if not (root / name).exists()
  ]


def comparison_files(manual_dir: epath.PathLike) -> list[epath.Path]:
  """Returns the sorted `comparisons/*.json` files of `manual_dir`."""
  root = epath.Path(manual_dir) / COMPARISONS_DIR
  return sorted(root.glob("*.json")) if root.exists() else []


def missing_comparison_files(manual_dir: epath.PathLike) -> list[str]:
  """Lists what is missing for `tldr_comparisons` (empty when all is there)."""
  if comparison_files(manual_dir):
    return []
  root = epath.Path(manual_dir) / COMPARISONS_DIR
  return [f"{root}/*.json  (no files; download {COMPARISONS_URL})"]


def _raise_missing(name: str, manual_dir: Any, missing: Sequence[str]) -> None:
  if missing:
    raise FileNotFoundError(
        f"{name}: missing input files under manual_dir={manual_dir}:\n  "
        + "\n  ".join(missing)
        + "\n\n"
        + MANUAL_DOWNLOAD_INSTRUCTIONS
    )


# ------------------------------- builders ---------------------------------


def _text_features(names: Sequence[str]) -> dict[str, Any]:
  return {name: tfds.features.Text() for name in names}


class Row(NamedTuple):
  """One classified input line: emitted (`example`) or skipped (`error`)."""

  owner: str  # the split the line counts for, or UNASSIGNED
  where: str  # "relative/path:line"
  example: dict[str, Any] | None
  error: RowError | None
  notes: Sequence[str] = ()


class _ReportingBuilder(
    tfds.core.GeneratorBasedBuilder, skip_registration=True
):
  """Counting and reporting shared by the two TL;DR builders.

  Subclasses define `_missing(manual_dir)` and `_rows(manual_dir, split)`;
  `_split_generators` first classifies every line (the counts), then writes
  the splits that have at least one valid row (TFDS cannot write an empty
  split; an empty split still appears in the report with `emitted` 0).
  """

  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  SPLITS: tuple[str, ...] = ()
  _tallies: dict[str, SplitTally]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9.10 resolves this through `importlib_resources`, a package it
    # only declares for Python < 3.9; the answer is this file either way.
    return epath.Path(inspect.getfile(cls))

  def _missing(self, manual_dir: epath.Path) -> list[str]:
    raise NotImplementedError

  def _rows(self, manual_dir: epath.Path, split: str | None) -> Iterator[Row]:
    raise NotImplementedError

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = dl_manager.manual_dir
    _raise_missing(self.name, manual_dir, self._missing(manual_dir))
    self._tallies = {split: SplitTally() for split in self.SPLITS}
    for row in self._rows(manual_dir, None):
      tally = self._tallies.setdefault(row.owner, SplitTally())
      tally.lines += 1
      if row.error is None:
        tally.emitted += 1
        tally.notes.update(row.notes)
      else:
        tally.skip(row.error.reason, row.where, row.error.detail)
    for split in self._tallies:
      self._log_tally(split)
    written = [s for s in self.SPLITS if self._tallies[s].emitted]
    if not written:
      raise ValueError(
          f"{self.name}: no valid row in {manual_dir}; skipped per split: "
          + json.dumps({k: dict(t.skipped) for k, t in self._tallies.items()})
      )
    return {s: self._generate_examples(manual_dir, s) for s in written}

  def _generate_examples(self, manual_dir: epath.Path, split: str):
    count = 0
    for row in self._rows(manual_dir, split):
      if row.owner == split and row.error is None:
        count += 1
        yield row.where, row.example
    if count != self._tallies[split].emitted:
      raise RuntimeError(
          f"{self.name}/{split}: {count} rows on the second read, "
          f"{self._tallies[split].emitted} on the first; did the input "
          "files change during preparation?"
      )

  def _log_tally(self, split: str) -> None:
    t = self._tallies[split]
    logging.info(
        "%s/%s: %d lines, %d emitted, skipped %s, notes %s",
        self.name, split, t.lines, t.emitted, dict(t.skipped), dict(t.notes),
    )
    for reason, shown in t.examples.items():
      logging.warning(
          "%s/%s: %d skipped (%s), e.g. %s",
          self.name, split, t.skipped[reason], reason, "; ".join(shown),
      )

  def preparation_report(self) -> dict[str, Any] | None:
    """Counts of the preparation run by this builder object, or None.

    Returns:
      {"dataset", "version", "splits": {split: SplitTally.as_dict()},
      "totals": {"lines", "emitted", "skipped"}} where lines == emitted +
      skipped, or None if this object has not prepared the data.
    """
    tallies = getattr(self, "_tallies", None)
    if not tallies:
      return None
    return {
        "dataset": self.name,
        "version": str(self.version),
        "splits": {k: v.as_dict() for k, v in tallies.items()},
        "totals": {
            "lines": sum(t.lines for t in tallies.values()),
            "emitted": sum(t.emitted for t in tallies.values()),
            "skipped": sum(sum(t.skipped.values()) for t in tallies.values()),
        },
    }


class TldrFiltered(_ReportingBuilder, skip_registration=_IS_MAIN):
  """OpenAI's filtered Reddit TL;DR set (`tldr_3_filtered`)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Verbatim rows of tldr_3_filtered/*.jsonl."}
  SPLITS = tuple(FILTERED_FILES)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(_text_features(_FILTERED_FIELDS)),
        homepage="https://github.com/openai/summarize-from-feedback",
    )

  def _missing(self, manual_dir: epath.Path) -> list[str]:
    return missing_filtered_files(manual_dir)

  def _rows(self, manual_dir: epath.Path, split: str | None) -> Iterator[Row]:
    for owner, name in FILTERED_FILES.items():
      if split not in (None, owner):
        continue
      path = manual_dir / FILTERED_DIR / name
      for where, line in numbered_lines(path, manual_dir):
        try:
          yield Row(owner, where, parse_filtered_line(line), None)
        except RowError as e:
          yield Row(owner, where, None, e)


class TldrComparisons(_ReportingBuilder, skip_registration=_IS_MAIN):
  """Human comparisons of OpenAI's summarize-from-feedback (TL;DR rows)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "TL;DR comparisons; CNN/DM rows skipped."}
  SPLITS = COMPARISON_SPLITS

  def _info(self) -> tfds.core.DatasetInfo:
    names = _INFO_FIELDS + tuple(
        f"{k}_{i}" for k in ("summary", "policy", "note") for i in (0, 1)
    ) + ("worker", "batch")
    features = _text_features(names)
    features["choice"] = tfds.features.Scalar(dtype=np.int32)
    features["confidence"] = tfds.features.Scalar(dtype=np.int32)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        homepage="https://github.com/openai/summarize-from-feedback",
    )

  def _missing(self, manual_dir: epath.Path) -> list[str]:
    return missing_comparison_files(manual_dir)

  def _rows(self, manual_dir: epath.Path, split: str | None) -> Iterator[Row]:
    del split  # Every comparison file may hold rows of every split.
    for path in comparison_files(manual_dir):
      for where, line in numbered_lines(path, manual_dir):
        try:
          obj = load_object(line)
          owner = comparison_owner(obj)
        except RowError as e:
          yield Row(UNASSIGNED, where, None, e)
          continue
        try:
          example, notes = parse_comparison(obj)
          yield Row(owner, where, example, None, notes)
        except RowError as e:
          yield Row(owner, where, None, e)


BUILDERS = (TldrFiltered, TldrComparisons)


# ------------------------------ preparation -------------------------------


def _report_path(builder: tfds.core.DatasetBuilder) -> epath.Path:
  return epath.Path(builder.data_dir) / REPORT_FILE


def prepare(
    manual_dir: epath.PathLike, data_dir: epath.PathLike
) -> dict[str, dict[str, Any] | None]:
  """Prepares `tldr_filtered` and `tldr_comparisons` from `manual_dir`.

  Input files are checked for both datasets before anything is written. A
  dataset already prepared in `data_dir` is left as it is, and its saved
  report is returned.

  Args:
    manual_dir: folder with `tldr_3_filtered/` and `comparisons/`.
    data_dir: TFDS data directory to write to.

  Returns:
    {dataset name: report} where a report is the dict of
    `preparation_report()` (also written as JSON next to the prepared data),
    or None for a dataset prepared elsewhere without a report.

  Raises:
    FileNotFoundError: input files are missing; the message lists each
      missing path and where to download it.
  """
  missing = missing_filtered_files(manual_dir) + missing_comparison_files(
      manual_dir
  )
  _raise_missing("tldr_filtered/tldr_comparisons", manual_dir, missing)
  config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  reports = {}
  for cls in BUILDERS:
    builder = cls(data_dir=str(data_dir))
    builder.download_and_prepare(download_config=config)
    report = builder.preparation_report()
    path = _report_path(builder)
    if report is not None:
      report["manual_dir"] = str(manual_dir)
      path.write_text(json.dumps(report, indent=2, sort_keys=True))
    elif path.exists():
      report = json.loads(path.read_text())
    reports[cls.name] = report
  return reports


def main(argv: Sequence[str] | None = None) -> int:
  """CLI: prepares both datasets and prints the counts as JSON."""
  parser = argparse.ArgumentParser(
      prog="python -m nlhf_jax.data.tldr_builders",
      description="Prepare the TL;DR TFDS datasets from local OpenAI files.",
      epilog=MANUAL_DOWNLOAD_INSTRUCTIONS,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--manual_dir", required=True)
  parser.add_argument("--data_dir", required=True)
  args = parser.parse_args(argv)
  try:
    reports = prepare(args.manual_dir, args.data_dir)
  except (FileNotFoundError, ValueError) as e:
    print(e, file=sys.stderr)
    return 2
  summary = {name: (r or {}).get("totals") for name, r in reports.items()}
  print(json.dumps({"totals": summary, "reports": reports}, indent=2))
  return 0


if _IS_MAIN:
  # Run the registered copy of this module so the builders are registered
  # under their names exactly once.
  # pylint: disable-next=g-import-not-at-top
  from nlhf_jax.data import tldr_builders as _lib

  sys.exit(_lib.main())
