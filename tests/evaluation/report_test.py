"""Tests of the report outputs: CSV, Markdown, PNG and report.md."""

import csv
import re

import numpy as np
import pytest
from matplotlib import image as mpl_image

from nlhf_jax.judges import text as judges
from nlhf_jax.evaluation import plots
from nlhf_jax.evaluation import report
from nlhf_jax.evaluation import tournament

_RUNS = {"nash_md": [(0, {"loss": 1.0, "kl": 0.0}), (10, {"loss": 0.6}),
                     (5, {"loss": 0.8, "kl": 0.02})],
         "rlhf": [(0, {"loss": 1.1}), (10, {"loss": 0.7})]}


@pytest.fixture(scope="module")
def result(synthetic_world):
  world = synthetic_world
  summaries = {"SFT|v1": world.summaries["sup_long"],
               "ref": world.summaries["ref"],
               "pretrained": world.summaries["pretrained"]}
  return tournament.run_tournament(
      world.prompts, summaries, judges.synthetic_judge(),
      references=world.references, baseline="SFT|v1", kl={"ref": [0.5, 0.7]})


@pytest.fixture(scope="module")
def written(result, tmp_path_factory):
  out = tmp_path_factory.mktemp("report")
  files = report.write_report(out, result, training_runs=_RUNS,
                              notes="Judged by *P\\**; seed 0.",
                              title="Synthetic check")
  return out, files


def _read_csv(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.reader(f))


def _table_rows(markdown: str) -> list[list[str]]:
  """Cells of every Markdown table row, splitting on unescaped '|'."""
  rows = []
  for line in markdown.splitlines():
    if line.startswith("|") and not line.startswith("|---"):
      cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
      rows.append([c.strip().replace("\\|", "|") for c in cells])
  return rows


def test_matrix_csv_parses_back_exactly(result, written):
  rows = _read_csv(written[1].matrix_csv)
  assert rows[0] == ["row \\ column", *result.policies]
  assert [r[0] for r in rows[1:]] == list(result.policies)
  values = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
  np.testing.assert_array_equal(values, result.win_rate)


def test_cells_csv_parses_back_exactly(result, written):
  rows = _read_csv(written[1].cells_csv)
  assert tuple(rows[0]) == report.CELL_FIELDS
  body = [dict(zip(rows[0], r)) for r in rows[1:]]
  assert len(body) == 3 * 2
  for row in body:
    cell = result.cell(row["row"], row["column"])
    assert float(row["win_rate"]) == cell.win_rate
    assert (float(row["ci_low"]), float(row["ci_high"])) == (cell.ci_low,
                                                             cell.ci_high)
    assert int(row["num_samples"]) == 48
    assert int(row["sampled_wins"]) == cell.sampled_wins
    assert row["method"] == "fractional" and float(row["confidence"]) == 0.95


def test_stats_csv_parses_back(result, written):
  rows = _read_csv(written[1].stats_csv)
  header, body = rows[0], {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
  assert "win_rate_vs_SFT|v1" in header
  ref = result.stats["ref"]
  assert float(body["ref"]["rouge2"]) == ref.rouge["rouge2"]
  assert float(body["ref"]["win_rate_vs_SFT|v1"]) == ref.vs_baseline.win_rate
  assert float(body["ref"]["kl_mean"]) == pytest.approx(0.6)
  assert body["ref"]["kl_count"] == "2"
  assert body["SFT|v1"]["win_rate_vs_SFT|v1"] == ""  # The baseline itself.
  assert body["pretrained"]["kl_mean"] == ""
  assert body["ref"]["mean_tokens"] == ""  # No token counter given.


def test_markdown_matrix_parses_back(result, written):
  with open(written[1].matrix_markdown, encoding="utf-8") as f:
    text = f.read()
  assert "n = 48 per cell" in text and "95% Clopper–Pearson" in text
  rows = _table_rows(text)
  assert rows[0] == ["row \\ column", *result.policies]
  for r, row in enumerate(rows[1:]):
    assert row[0] == result.policies[r]
    for c, cell_text in enumerate(row[1:]):
      if r == c:
        assert cell_text == "–"
        continue
      match = re.fullmatch(r"(\d\.\d{3}) \[(\d\.\d{3}), (\d\.\d{3})\]",
                           cell_text)
      assert match, cell_text
      parsed = [float(g) for g in match.groups()]
      np.testing.assert_allclose(
          parsed, [result.win_rate[r, c], result.ci_low[r, c],
                   result.ci_high[r, c]], atol=5e-4 + 1e-12)


def test_heatmap_png_is_a_real_image(written):
  with open(written[1].heatmap, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  pixels = mpl_image.imread(written[1].heatmap)
  assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200
  assert np.std(pixels[..., :3]) > 0.05  # Not a blank canvas.


def test_report_md_ties_everything_together(result, written):
  out, files = written
  with open(files.report, encoding="utf-8") as f:
    text = f.read()
  assert text.startswith("# Synthetic check\n")
  for heading in ("## Win rates", "## Per-policy statistics",
                  "## Training curves", "## Notes"):
    assert heading in text
  assert "Judged by *P\\**; seed 0." in text
  images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
  assert images[0] == "win_rates.png"
  assert sorted(images[1:]) == ["curves/curve_kl.png", "curves/curve_loss.png"]
  for link in images + re.findall(r"\]\(([^)]+\.csv)\)", text):
    assert (out / link).is_file(), link
  stats_rows = [r for r in _table_rows(text) if r[0] == "ref" and len(r) == 9]
  assert stats_rows[0][-1] == "0.600 ± 0.100"  # KL mean ± stderr of 0.5, 0.7.
  vs_sft = result.stats["ref"].vs_baseline
  assert stats_rows[0][6] == (f"{vs_sft.win_rate:.3f} [{vs_sft.ci_low:.3f}, "
                              f"{vs_sft.ci_high:.3f}]")


def test_training_curves_one_png_per_metric(tmp_path):
  paths = plots.plot_training_curves(_RUNS, tmp_path / "c", metrics=["kl"],
                                     prefix="")
  assert list(paths) == ["kl"] and paths["kl"].endswith("kl.png")
  assert mpl_image.imread(paths["kl"]).shape[0] > 100
  with pytest.raises(ValueError, match=r"metrics \['acc'\] appear in no run"):
    plots.plot_training_curves(_RUNS, tmp_path, metrics=["acc"])
  with pytest.raises(ValueError, match="no runs"):
    plots.plot_training_curves({}, tmp_path)
  with pytest.raises(ValueError, match="collide"):
    plots.plot_training_curves({"r": [(0, {"a/b": 1.0, "a b": 2.0})]},
                               tmp_path)


def test_report_without_curves_or_extras(tmp_path):
  result = tournament.run_tournament(["x"], {"only": ["a b"]},
                                     lambda p, f, s: np.full(len(p), 0.5))
  files = report.write_report(tmp_path, result)
  text = (tmp_path / "report.md").read_text(encoding="utf-8")
  assert "## Training curves" not in text and "(none)" in text
  assert files.curves == {}
  assert "no comparisons" in report.win_rate_markdown(result)
  header, row = _read_csv(files.stats_csv)
  assert row[header.index("mean_win_rate")] == ""  # NaN: no opponent.
  assert float(row[header.index("mean_words")]) == 2.0
