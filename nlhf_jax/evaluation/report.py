"""Tournament outputs: CSV and Markdown tables, figures and `report.md`.

Files written by `write_report(out_dir, result, ...)`:

  win_rates.csv        square matrix: header "row \\ column", then one row
                       per policy; cell = P(column ≻ row) (full precision)
  win_rate_cells.csv   long format, one line per ordered pair row ≠ column:
                       row, column, win_rate, ci_low, ci_high, num_samples,
                       sampled_wins, confidence, method
  win_rates.md         the Markdown matrix with intervals
  win_rates.png        heatmap (`plots.plot_win_rate_heatmap`)
  policy_stats.csv     per policy: lengths, ROUGE F1, win rate vs the
                       baseline with interval, mean win rate, KL
  pooled_game.csv      per policy: exploitability in the game restricted
                       to the pooled responses (± s.e.) and its mass in
                       that game's Nash equilibrium (`exploitability`)
  pair_tests.csv       per pair: mean P(column ≻ row), t, p, Holm p,
                       significant at α = 0.05 (`significance`)
  curves/curve_*.png   training curves, when metric logs are given
  report.md            ties them together, with the caller's notes

Floats in CSVs are written with Python's shortest round-trip repr, so they
parse back exactly; missing values are empty fields.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Mapping, Sequence

from nlhf_jax.evaluation import exploitability
from nlhf_jax.evaluation import metric_logs
from nlhf_jax.evaluation import plots
from nlhf_jax.evaluation import rouge
from nlhf_jax.evaluation import significance
from nlhf_jax.evaluation import tournament as tournament_lib

Result = tournament_lib.TournamentResult
CELL_FIELDS = ("row", "column", "win_rate", "ci_low", "ci_high",
               "num_samples", "sampled_wins", "confidence", "method")


@dataclasses.dataclass(frozen=True)
class ReportFiles:
  """Paths written by `write_report`."""
  report: str
  matrix_csv: str
  cells_csv: str
  matrix_markdown: str
  heatmap: str
  stats_csv: str
  curves: Mapping[str, str]
  pooled_csv: str | None = None  # None: a single policy, no pool.
  tests_csv: str | None = None  # None: a single policy, no pairs.


def _field(value: object) -> str:
  """CSV text of a value: '' for None/NaN, exact repr for floats."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return ""
  return repr(float(value)) if isinstance(value, float) else str(value)


def _write_csv(path: str | os.PathLike, header: Sequence[str],
               rows: Sequence[Sequence[object]]) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows([[_field(v) for v in row] for row in rows])
  return os.fspath(path)


def write_matrix_csv(result: Result, path: str | os.PathLike) -> str:
  """Square CSV of P(column ≻ row); returns the path."""
  rows = [[name] + [float(v) for v in result.win_rate[i]]
          for i, name in enumerate(result.policies)]
  return _write_csv(path, ["row \\ column", *result.policies], rows)


def write_cells_csv(result: Result, path: str | os.PathLike) -> str:
  """Long-format CSV (`CELL_FIELDS`), one line per ordered pair."""
  rows = []
  for row in result.policies:
    for column in result.policies:
      if row != column:
        cell = result.cell(row, column)
        rows.append([row, column, cell.win_rate, cell.ci_low, cell.ci_high,
                     cell.num_samples, cell.sampled_wins, cell.confidence,
                     cell.method])
  return _write_csv(path, CELL_FIELDS, rows)


def _stats_header(result: Result) -> list[str]:
  base = result.baseline or "baseline"
  return (["policy", "mean_words", "mean_tokens", *rouge.ROUGE_TYPES,
           f"win_rate_vs_{base}", "ci_low", "ci_high", "mean_win_rate",
           "kl_mean", "kl_stderr", "kl_count"])


def _stats_row(stats: tournament_lib.PolicyStats) -> list[object]:
  scores = stats.rouge or {}
  vs = stats.vs_baseline
  return [stats.name, stats.mean_words, stats.mean_tokens,
          *[scores.get(name) for name in rouge.ROUGE_TYPES],
          vs.win_rate if vs else None, vs.ci_low if vs else None,
          vs.ci_high if vs else None, stats.mean_win_rate, stats.kl_mean,
          stats.kl_stderr, stats.kl_count if stats.kl_mean is not None
          else None]


def write_stats_csv(result: Result, path: str | os.PathLike) -> str:
  """Per-policy statistics CSV; returns the path."""
  rows = [_stats_row(result.stats[name]) for name in result.policies]
  return _write_csv(path, _stats_header(result), rows)


def write_pooled_csv(game: exploitability.PooledGame,
                     path: str | os.PathLike) -> str:
  """The pooled game's per-policy figures as CSV; returns the path."""
  rows = [[name, game.exploitability[name],
           game.exploitability_stderr[name], game.nash_mass[name]]
          for name in game.policies]
  return _write_csv(path, ["policy", "exploitability", "stderr",
                           "nash_mass"], rows)


def write_tests_csv(tests: Sequence[significance.PairTest],
                    path: str | os.PathLike) -> str:
  """One line per pair: row, column, win_rate, t, p, Holm p, significant."""
  return _write_csv(path, ("row", "column", "win_rate", "num_prompts", "t",
                           "p_value", "holm_p_value", "significant"),
                    [(t.row, t.column, t.win_rate, t.num_prompts, t.t,
                      t.p_value, t.adjusted_p_value, int(t.significant))
                     for t in tests])


def _escape(text: str) -> str:
  return text.replace("|", "\\|")


def _fmt(value: float | None, decimals: int) -> str:
  if value is None or math.isnan(value):
    return "–"
  return f"{value:.{decimals}f}"


def win_rate_markdown(result: Result, decimals: int = 3,
                      show_ci: bool = True) -> str:
  """Markdown matrix: cell = "p [low, high]" of P(column ≻ row).

  Args:
    result: a tournament result.
    decimals: digits after the point.
    show_ci: append the interval to each cell.

  Returns:
    The table preceded by a one-line caption.
  """
  names = result.policies
  cells = result.num_samples[result.num_samples > 0]
  n_text = (f"n = {int(cells.min())}" if cells.min() == cells.max()
            else f"n = {int(cells.min())}–{int(cells.max())}"
            ) if cells.size else "no comparisons"
  lines = [f"P(column ≻ row), judge: {_escape(result.judge_name)}, {n_text} "
           f"per cell, {result.confidence:.0%} Clopper–Pearson intervals "
           f"({result.interval_method}).", "",
           "| row \\ column | " + " | ".join(map(_escape, names)) + " |",
           "|---" * (len(names) + 1) + "|"]
  for r, row in enumerate(names):
    texts = []
    for c in range(len(names)):
      text = _fmt(result.win_rate[r, c], decimals) if r != c else "–"
      if show_ci and r != c:
        text += (f" [{_fmt(result.ci_low[r, c], decimals)}, "
                 f"{_fmt(result.ci_high[r, c], decimals)}]")
      texts.append(text)
    lines.append(f"| {_escape(row)} | " + " | ".join(texts) + " |")
  return "\n".join(lines) + "\n"


def policy_stats_markdown(result: Result, decimals: int = 3) -> str:
  """Markdown table of the per-policy statistics (columns as the CSV)."""
  base = result.baseline or "baseline"
  header = ["policy", "words", "tokens", "ROUGE-1", "ROUGE-2", "ROUGE-L",
            f"P(· ≻ {_escape(base)}) [CI]", "mean win rate", "KL"]
  lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
  for name in result.policies:
    s = result.stats[name]
    scores = s.rouge or {}
    vs = (f"{_fmt(s.vs_baseline.win_rate, decimals)} "
          f"[{_fmt(s.vs_baseline.ci_low, decimals)}, "
          f"{_fmt(s.vs_baseline.ci_high, decimals)}]" if s.vs_baseline
          else "–")
    kl = "–"
    if s.kl_mean is not None:
      kl = _fmt(s.kl_mean, decimals)
      if not math.isnan(s.kl_stderr):
        kl += f" ± {_fmt(s.kl_stderr, decimals)}"
    row = [_escape(name), _fmt(s.mean_words, 1), _fmt(s.mean_tokens, 1),
           *[_fmt(scores.get(t), decimals) for t in rouge.ROUGE_TYPES],
           vs, _fmt(s.mean_win_rate, decimals), kl]
    lines.append("| " + " | ".join(row) + " |")
  return "\n".join(lines) + "\n"


def unanswered_markdown(result: Result) -> str:
  """The pairs with comparisons the judge left unanswered ('' if none)."""
  missing = {pair: k for pair, k in result.unanswered.items() if k}
  if not missing:
    return ""
  n = len(next(iter(result.comparisons.values())))
  lines = [f"Unanswered comparisons (the judge gave no usable answer after "
           f"its retries; left out of the cells above), of {n} per pair:", "",
           "| pair | unanswered |", "|---|---|"]
  lines += [f"| {_escape(r)} vs {_escape(c)} | {k} |"
            for (r, c), k in missing.items()]
  return "\n".join(lines) + "\n"


def pooled_game_section(game: exploitability.PooledGame, csv_path: str,
                        level: str = "##") -> list[str]:
  """Markdown lines: the pooled-response game's explanation and table."""
  return [f"{level} Exploitability in the pooled-response game", "",
          "Per prompt, the game restricted to the policies' sampled "
          "responses, judged by this judge: a policy's exploitability is the "
          "best pooled response's win rate against its response, minus ½, "
          "averaged over prompts (± standard error). The best response may "
          "only use pooled responses, so this is a lower bound on the "
          "exploitability in the full game. The restricted game's Nash "
          "equilibrium (exploitability "
          f"{game.nash_exploitability:.1e}) puts the mass shown on each "
          "policy's responses.", "", exploitability.markdown(game),
          f"Data: [{csv_path}]({csv_path}).", ""]


def _report_text(result: Result, title: str, files: Mapping[str, str],
                 curves: Mapping[str, str], notes: str, out_dir: str,
                 game: exploitability.PooledGame | None,
                 tests: Sequence[significance.PairTest]) -> str:
  rel = {k: os.path.relpath(v, out_dir) for k, v in files.items()}
  parts = [f"# {title}", "",
           f"Policies: {', '.join(result.policies)}. Judge: "
           f"{result.judge_name}. Baseline: {result.baseline or 'none'}.", "",
           "## Win rates", "", win_rate_markdown(result),
           f"![win-rate heatmap]({rel['heatmap']})", "",
           f"Data: [{rel['matrix_csv']}]({rel['matrix_csv']}) (matrix), "
           f"[{rel['cells_csv']}]({rel['cells_csv']}) (cells with intervals).",
           ""]
  if tests:
    parts += ["## Which differences are significant", "",
              significance.markdown(tests),
              f"Data: [{rel['tests_csv']}]({rel['tests_csv']}).", ""]
  parts += [unanswered_markdown(result), "## Per-policy statistics", "",
            policy_stats_markdown(result),
            f"Data: [{rel['stats_csv']}]({rel['stats_csv']}). Words: "
            "whitespace-separated; ROUGE: mean per-summary F1 against the "
            "references; KL: mean of per-sample estimates ± standard error.",
            ""]
  if game is not None:
    parts += pooled_game_section(game, rel["pooled_csv"])
  if curves:
    parts += ["## Training curves", ""]
    for metric, path in curves.items():
      parts += [f"![{metric}]({os.path.relpath(path, out_dir)})", ""]
  parts += ["## Notes", "", notes.strip() or "(none)", ""]
  return "\n".join(parts)


def write_report(out_dir: str | os.PathLike, result: Result, *,
                 training_runs: Mapping[str, Sequence[metric_logs.Record]]
                 | None = None, curve_metrics: Sequence[str] | None = None,
                 notes: str = "",
                 title: str = "Evaluation report") -> ReportFiles:
  """Writes every table and figure of `result` plus `report.md`.

  Args:
    out_dir: output folder (created if missing).
    result: a tournament result.
    training_runs: optional {run: [(step, metrics)]} for training curves
      (e.g. from `metric_logs.read_runs`).
    curve_metrics: which metrics to plot (default: all).
    notes: free text (Markdown) for the Notes section.
    title: report title.

  Returns:
    The `ReportFiles` written.
  """
  out_dir = os.fspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  join = lambda name: os.path.join(out_dir, name)
  files = {"matrix_csv": write_matrix_csv(result, join("win_rates.csv")),
           "cells_csv": write_cells_csv(result, join("win_rate_cells.csv")),
           "stats_csv": write_stats_csv(result, join("policy_stats.csv")),
           "heatmap": plots.plot_win_rate_heatmap(result,
                                                  join("win_rates.png"))}
  game = (exploitability.pooled_game(result)
          if len(result.policies) > 1 else None)
  tests = []
  if game is not None:
    files["pooled_csv"] = write_pooled_csv(game, join("pooled_game.csv"))
    tests = significance.pairwise_tests(result)
    files["tests_csv"] = write_tests_csv(tests, join("pair_tests.csv"))
  files["matrix_markdown"] = join("win_rates.md")
  with open(files["matrix_markdown"], "w", encoding="utf-8") as f:
    f.write(win_rate_markdown(result))
  curves = {}
  if training_runs:
    curves = plots.plot_training_curves(training_runs, join("curves"),
                                        metrics=curve_metrics)
  report_path = join("report.md")
  with open(report_path, "w", encoding="utf-8") as f:
    f.write(_report_text(result, title, files, curves, notes, out_dir, game,
                         tests))
  return ReportFiles(report=report_path, curves=curves, **files)
