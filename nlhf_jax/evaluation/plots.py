"""PNG figures: the win-rate heatmap and training curves.

Figures are drawn on matplotlib's Agg canvas directly (`Figure` +
`FigureCanvasAgg`, no pyplot), so nothing touches the global backend or
needs a display, and figures are freed as soon as they are written.
"""

from __future__ import annotations

import os
import re
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends import backend_agg
from matplotlib import figure as figure_lib

from nlhf_jax.evaluation import metric_logs
from nlhf_jax.evaluation import tournament as tournament_lib

_DPI = 120


def _save(fig: figure_lib.Figure, path: str | os.PathLike) -> str:
  backend_agg.FigureCanvasAgg(fig)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=_DPI, bbox_inches="tight")
  return os.fspath(path)


def plot_win_rate_heatmap(result: tournament_lib.TournamentResult,
                          path: str | os.PathLike,
                          title: str | None = None) -> str:
  """Heatmap of P(column ≻ row) with each cell's value written in it.

  Colours run from red (column loses, 0) through white (0.5) to blue
  (column wins, 1); the diagonal is grey.

  Args:
    result: a tournament result.
    path: output PNG path (parent folders are created).
    title: figure title; defaults to the judge and samples per cell.

  Returns:
    The path written.
  """
  names = result.policies
  size = len(names)
  values = np.array(result.win_rate, dtype=np.float64)
  masked = np.ma.masked_where(np.eye(size, dtype=bool), values)
  side = 1.2 + 0.75 * size
  fig = figure_lib.Figure(figsize=(side + 1.4, side))
  ax = fig.add_subplot()
  cmap = _diverging_cmap()
  image = ax.imshow(masked, cmap=cmap, vmin=0.0, vmax=1.0)
  ax.set_xticks(range(size), labels=names, rotation=45, ha="right")
  ax.set_yticks(range(size), labels=names)
  ax.set_xlabel("column policy")
  ax.set_ylabel("row policy")
  font = max(6, 11 - size // 3)
  for r in range(size):
    for c in range(size):
      text = "–" if r == c else f"{values[r, c]:.2f}"
      dark = r != c and abs(values[r, c] - 0.5) > 0.3
      ax.text(c, r, text, ha="center", va="center", fontsize=font,
              color="white" if dark else "black")
  cells = result.num_samples[~np.eye(size, dtype=bool)]
  n_text = f"n = {int(cells.min())}" if cells.size else "no comparisons"
  ax.set_title(title or rf"$P(\mathrm{{column}} \succ \mathrm{{row}})$, "
               f"judge: {result.judge_name}, {n_text}", fontsize=9)
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  return _save(fig, path)


def _diverging_cmap():
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  return colormaps["RdBu"].with_extremes(bad="#d9d9d9")


def _file_stem(metric: str) -> str:
  stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_.")
  return stem or "metric"


def plot_training_curves(
    runs: Mapping[str, Sequence[metric_logs.Record]],
    out_dir: str | os.PathLike, metrics: Sequence[str] | None = None,
    prefix: str = "curve_") -> dict[str, str]:
  """One PNG per metric, one line per run, metric value against step.

  Args:
    runs: {run name: [(step, {metric: value}), ...]} (see `metric_logs`).
    out_dir: folder for the PNGs (created if missing).
    metrics: metric names to plot, in this order; default: every metric, in
      order of first appearance.
    prefix: file-name prefix; files are `<prefix><metric>.png` with
      characters outside [A-Za-z0-9_.-] replaced by "_".

  Returns:
    {metric: PNG path}.

  Raises:
    ValueError: if `runs` is empty, a requested metric appears in no run,
      or two metrics map to the same file name.
  """
  if not runs:
    raise ValueError("no runs to plot")
  available = metric_logs.metric_names(runs)
  metrics = list(available if metrics is None else metrics)
  missing = [m for m in metrics if m not in available]
  if missing:
    raise ValueError(f"metrics {missing} appear in no run; available: "
                     f"{available}")
  stems = [_file_stem(m) for m in metrics]
  if len(set(stems)) != len(stems):
    raise ValueError(f"metric names collide as file names: {metrics}")
  paths = {}
  for metric, stem in zip(metrics, stems):
    fig = figure_lib.Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot()
    for run, records in runs.items():
      points = sorted((step, values[metric]) for step, values in records
                      if metric in values)
      if points:
        steps, ys = zip(*points)
        ax.plot(steps, ys, label=run, marker="." if len(points) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths[metric] = _save(fig, os.path.join(out_dir, f"{prefix}{stem}.png"))
  return paths
