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
  `batch`, `confidence` (int32, `extra.confidence`; -1 (`MISSING_CONFIDENCE`)
  where absent or null).

Every input line is parsed by `tldr_files` (the parser the JSONL sources and
vocabulary training share) and either emitted or skipped with a reason (the
skip reasons and the pseudo-split `unassigned` are listed there); the counts
are logged at the end of each split and returned by `preparation_report()`;
`prepare()` also writes them to `<data_dir>/<name>/<version>/
preparation_report.json`. Emitted rows with a null note or a missing
confidence are counted under `notes`. A split with no valid row is not
written (TFDS cannot write empty splits) but is still in the report.

CLI: `python -m nlhf_jax.data.tldr_builders --manual_dir M --data_dir D`.
"""

import argparse
import inspect
import json
import sys
from typing import Any, Iterator, Sequence

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from nlhf_jax.data import tldr_files

_BLOB = "https://openaipublic.blob.core.windows.net/summarize-from-feedback"
FILTERED_URL = _BLOB + "/datasets/tldr_3_filtered/{file}"
COMPARISONS_URL = _BLOB + "/dataset/comparisons/"
REPORT_FILE = "preparation_report.json"

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download OpenAI's summarize-from-feedback files (public, no account) into the
manual directory (`--manual_dir`, default `<data_dir>/downloads/manual`):

  <manual_dir>/{tldr_files.FILTERED_DIR}/{{train,valid,test}}.jsonl from
      {FILTERED_URL.format(file="{train,valid,test}.jsonl")}
  <manual_dir>/{tldr_files.COMPARISONS_DIR}/*.json (batch3.json ...
      batch20.json, batch22.json; CNN/DM files are skipped) from
      {COMPARISONS_URL}
      e.g. cd <manual_dir> && azcopy copy "{_BLOB}/dataset/*" . --recursive
"""

_IS_MAIN = __name__ == "__main__"


# ----------------------------- file checks --------------------------------


def missing_filtered_files(manual_dir: epath.PathLike) -> list[str]:
  """Lists the missing `tldr_3_filtered` files with their download URLs."""
  root = epath.Path(manual_dir) / tldr_files.FILTERED_DIR
  return [
      f"{root / name}  (download {FILTERED_URL.format(file=name)})"
      for name in tldr_files.FILTERED_FILES.values()
      if not (root / name).exists()
  ]


def missing_comparison_files(manual_dir: epath.PathLike) -> list[str]:
  """Lists what is missing for `tldr_comparisons` (empty when all is there)."""
  if tldr_files.comparison_files(epath.Path(manual_dir)):
    return []
  root = epath.Path(manual_dir) / tldr_files.COMPARISONS_DIR
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
  _tallies: dict[str, tldr_files.SplitTally]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9.10 resolves this through `importlib_resources`, a package it
    # only declares for Python < 3.9; the answer is this file either way.
    return epath.Path(inspect.getfile(cls))

  def _missing(self, manual_dir: epath.Path) -> list[str]:
    raise NotImplementedError

  def _rows(
      self, manual_dir: epath.Path, split: str | None
  ) -> Iterator[tldr_files.Row]:
    raise NotImplementedError

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = dl_manager.manual_dir
    _raise_missing(self.name, manual_dir, self._missing(manual_dir))
    self._tallies = {split: tldr_files.SplitTally() for split in self.SPLITS}
    for row in self._rows(manual_dir, None):
      self._tallies.setdefault(row.owner, tldr_files.SplitTally()).add(row)
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
  SPLITS = tuple(tldr_files.FILTERED_FILES)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
            _text_features(tldr_files.FILTERED_FIELDS)),
        homepage="https://github.com/openai/summarize-from-feedback",
    )

  def _missing(self, manual_dir: epath.Path) -> list[str]:
    return missing_filtered_files(manual_dir)

  def _rows(
      self, manual_dir: epath.Path, split: str | None
  ) -> Iterator[tldr_files.Row]:
    for owner in tldr_files.FILTERED_FILES:
      if split in (None, owner):
        yield from tldr_files.filtered_rows(manual_dir, owner)


class TldrComparisons(_ReportingBuilder, skip_registration=_IS_MAIN):
  """Human comparisons of OpenAI's summarize-from-feedback (TL;DR rows)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "TL;DR comparisons; CNN/DM rows skipped."}
  SPLITS = tldr_files.COMPARISON_SPLITS

  def _info(self) -> tfds.core.DatasetInfo:
    names = tldr_files.INFO_FIELDS + tuple(
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

  def _rows(
      self, manual_dir: epath.Path, split: str | None
  ) -> Iterator[tldr_files.Row]:
    del split  # Every comparison file may hold rows of every split.
    return tldr_files.comparison_rows(manual_dir)


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
