"""Tests for the TL;DR TFDS builders, their accounting and the CLI."""

import collections
import json
import pathlib

import pytest
import tensorflow_datasets as tfds

from nlhf_jax.data import prompts
from nlhf_jax.data import tldr_builders
from nlhf_jax.data import vocab

# Fixtures tldr_env and tldr_testdata live in tests/data/conftest.py.
REAL_SAMPLE = (pathlib.Path(__file__).resolve().parents[2].parent / "shared"
               / "data" / "tldr_real_sample")


def _rows(builder_cls, data_dir, split):
  builder = builder_cls(data_dir=str(data_dir))
  ds = builder.as_dataset(split=split, shuffle_files=False)
  return [
      {k: v.decode("utf-8") if isinstance(v, bytes) else int(v)
       for k, v in ex.items()}
      for ex in tfds.as_numpy(ds)
  ]


def _line_count(root: pathlib.Path, pattern: str) -> int:
  return sum(len(p.read_bytes().splitlines()) for p in root.glob(pattern))


# ---------------------------- accounting ---------------------------------


@pytest.mark.parametrize("dataset", ["tldr_filtered", "tldr_comparisons"])
def test_every_line_is_emitted_or_counted_with_its_reason(tldr_env, dataset):
  report = tldr_env.reports[dataset]
  for split, want in tldr_env.manual.expected[dataset].items():
    got = report["splits"][split]
    assert collections.Counter(
        {"emitted": got["emitted"], **got["skipped"]}) == want, split
    assert got["lines"] == got["emitted"] + sum(got["skipped"].values())
  pattern = ("tldr_3_filtered/*.jsonl" if dataset == "tldr_filtered"
             else "comparisons/*.json")
  lines = _line_count(tldr_env.manual.root, pattern)
  totals = report["totals"]
  assert totals["lines"] == lines
  assert totals["emitted"] + totals["skipped"] == lines


def test_skip_examples_name_file_and_line(tldr_env):
  splits = tldr_env.reports["tldr_comparisons"]["splits"]
  assert splits["train"]["examples"]["bad_choice"] == [
      "comparisons/batch3.json:15: choice=2 not in (0, 1)"]
  assert splits["unassigned"]["skipped"]["cnndm"] == 2
  filtered = tldr_env.reports["tldr_filtered"]["splits"]
  assert filtered["train"]["examples"]["empty_summary"] == [
      "tldr_3_filtered/train.jsonl:12: summary is empty"]


def test_report_is_saved_next_to_the_data_and_matches_tfds(tldr_env):
  for cls in tldr_builders.BUILDERS:
    path = tldr_env.data_dir / cls.name / "1.0.0" / "preparation_report.json"
    saved = json.loads(path.read_text())
    assert saved == tldr_env.reports[cls.name]
    info = cls(data_dir=str(tldr_env.data_dir)).info
    for split in cls.SPLITS:
      assert info.splits[split].num_examples == saved["splits"][split]["emitted"]


def test_comparison_notes_count_nulls_and_missing_confidence(tldr_env):
  splits = tldr_env.reports["tldr_comparisons"]["splits"]
  good = tldr_env.manual.comparisons
  for split in tldr_builders.TldrComparisons.SPLITS:
    want_missing = sum(
        (row.get("extra") or {}).get("confidence") is None
        for row in good[split])
    assert splits[split]["notes"].get("missing_confidence", 0) == want_missing
    assert splits[split]["notes"]["null_note"] == len(good[split])


# ------------------------------ contents ---------------------------------


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_filtered_rows_are_stored_verbatim(tldr_env, split):
  got = _rows(tldr_builders.TldrFiltered, tldr_env.data_dir, split)
  key = lambda r: r["id"]
  assert sorted(got, key=key) == sorted(tldr_env.manual.filtered[split], key=key)


@pytest.mark.parametrize("split", ["train", "valid1", "valid2"])
def test_comparison_rows_keep_fields_and_sentinels(tldr_env, split):
  got = _rows(tldr_builders.TldrComparisons, tldr_env.data_dir, split)
  want = []
  for row in tldr_env.manual.comparisons[split]:
    s0, s1 = row["summaries"]
    confidence = (row.get("extra") or {}).get("confidence")
    want.append({
        **{k: row["info"][k] for k in ("id", "subreddit", "title", "post")},
        "summary_0": s0["text"], "summary_1": s1["text"],
        "policy_0": s0["policy"], "policy_1": s1["policy"],
        "note_0": s0["note"] or "", "note_1": s1["note"] or "",
        "choice": row["choice"], "worker": row["worker"],
        "batch": row["batch"],
        "confidence": -1 if confidence is None else confidence,
    })
  key = lambda r: (r["id"], r["summary_0"])
  assert sorted(got, key=key) == sorted(want, key=key)
  assert all(r["summary_0"].startswith(" ") for r in got)
  assert not any(r["id"] == "cnn-1" for r in got)


# ------------------------------ bad input --------------------------------


def test_missing_files_are_listed_with_urls(tmp_path, tldr_testdata):
  manual = tldr_testdata.write_manual_dir(tmp_path / "manual")
  (manual.root / "tldr_3_filtered" / "valid.jsonl").unlink()
  for path in (manual.root / "comparisons").glob("*.json"):
    path.unlink()
  with pytest.raises(FileNotFoundError) as e:
    tldr_builders.prepare(manual.root, tmp_path / "tfds")
  message = str(e.value)
  assert str(manual.root / "tldr_3_filtered" / "valid.jsonl") in message
  assert tldr_builders.FILTERED_URL.format(file="valid.jsonl") in message
  assert f"{manual.root / 'comparisons'}/*.json" in message
  assert tldr_builders.COMPARISONS_URL in message
  assert "train.jsonl  (download" not in message  # present files not listed
  assert not (tmp_path / "tfds").exists()  # nothing half-prepared


def test_cli_reports_missing_files_and_exit_code(tmp_path, capsys):
  rc = tldr_builders.main(
      ["--manual_dir", str(tmp_path / "nothing"), "--data_dir", str(tmp_path)])
  assert rc == 2
  err = capsys.readouterr().err
  assert str(tmp_path / "nothing" / "tldr_3_filtered" / "test.jsonl") in err


def test_cli_on_prepared_data_prints_saved_counts(tldr_env, capsys):
  rc = tldr_builders.main(["--manual_dir", str(tldr_env.manual.root),
                           "--data_dir", str(tldr_env.data_dir)])
  assert rc == 0
  out = json.loads(capsys.readouterr().out)
  assert out["reports"] == tldr_env.reports
  assert out["totals"]["tldr_comparisons"] == (
      tldr_env.reports["tldr_comparisons"]["totals"])


def test_comparisons_with_no_valid_row_fail_with_counts(tmp_path):
  root = tmp_path / "manual"
  (root / "comparisons").mkdir(parents=True)
  (root / "comparisons" / "cnndm0.json").write_text(
      json.dumps({"info": {"article": "a", "site": "cnn"}, "split": "valid1",
                  "batch": "cnndm0"}) + "\n{oops\n")
  builder = tldr_builders.TldrComparisons(data_dir=str(tmp_path / "tfds"))
  config = tfds.download.DownloadConfig(manual_dir=str(root))
  with pytest.raises(ValueError, match=r"no valid row.*\"cnndm\": 1.*\"bad_json\": 1"):
    builder.download_and_prepare(download_config=config)


# ------------------------- real OpenAI sample ----------------------------


@pytest.mark.skipif(
    not REAL_SAMPLE.exists(),
    reason=f"real TL;DR sample not present at {REAL_SAMPLE} "
    "(only the project's build machines have it)",
)
def test_real_sample_builds_and_prompts_round_trip(tmp_path):
  reports = tldr_builders.prepare(REAL_SAMPLE, tmp_path / "tfds")
  filtered = reports["tldr_filtered"]["splits"]
  assert {s: filtered[s]["emitted"] for s in filtered} == {
      "train": 20, "validation": 5, "test": 5}
  comparisons = reports["tldr_comparisons"]
  assert comparisons["totals"] == {"lines": 1, "emitted": 1, "skipped": 0}
  assert comparisons["splits"]["train"]["emitted"] == 1

  raw = [json.loads(line) for line in (
      REAL_SAMPLE / "tldr_3_filtered" / "train.jsonl").open()]
  rows = _rows(tldr_builders.TldrFiltered, tmp_path / "tfds", "train")
  assert sorted(rows, key=lambda r: r["id"]) == sorted(raw, key=lambda r: r["id"])

  texts, skipped = vocab.texts_from_jsonl(
      sorted(REAL_SAMPLE.glob("*/*.json*")))
  assert not skipped
  model = vocab.train_sentencepiece(
      texts, tmp_path / "sp", vocab_size=1000, keep_newlines=True)
  sp = vocab.load_vocabulary(str(model))
  for row in rows:
    prompt = prompts.format_prompt(row["subreddit"], row["title"], row["post"])
    target = prompts.format_target(row["summary"])
    for text in (prompt, target):
      assert sp.decode(sp.encode(text)) == text
      # The TF tokenizer may break score ties differently ("....."), but
      # decodes to the same text.
      assert sp.decode_tf(sp.encode_tf(text)).numpy().decode() == text
  (pair,) = _rows(tldr_builders.TldrComparisons, tmp_path / "tfds", "train")
  assert pair["summary_1"].startswith(" we suspect")
  assert pair["choice"] == 1 and pair["confidence"] == 8
