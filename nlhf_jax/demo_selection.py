"""Choosing the demo's online learning rate on validation prompts only.

  python -m nlhf_jax.demo --out demo_out --select_learning_rates 1e-4,3e-4,1e-3

runs, after the demo's own stages (skipped when complete), one online run of
a method (MD1 by default, `--select_method`) per candidate learning rate,
with every other setting the demo's, into `out/selection/lr_<rate>/`. Then
one tournament of SFT and the candidates on the world's **validation**
prompts (the demo's report uses the test prompts), judged by the exact P*
and by the learned PM, in `out/selection/report/`. The selected rate is the
candidate with the highest P*(· ≻ SFT) on validation; it and every
candidate's figure are written to `out/selection/selection.json`. The test
prompts are never read here, so a rate chosen this way can be reported on
them without the selection leaking into the figure.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Sequence

from nlhf_jax import sweep
from nlhf_jax.errors import ConfigError
from nlhf_jax.evaluation import pipeline

SELECTION_DIR = "selection"


def parse_rates(text: str) -> tuple[float, ...]:
  """'1e-4,3e-4' -> (1e-4, 3e-4); ConfigError on a bad or repeated rate."""
  try:
    rates = tuple(float(part) for part in text.split(",") if part.strip())
  except ValueError as e:
    raise ConfigError(f"--select_learning_rates {text!r}: {e}") from None
  if not rates or any(not r > 0 for r in rates) or len(set(rates)) < len(
      rates):
    raise ConfigError(f"--select_learning_rates {text!r} must list distinct "
                      "positive learning rates, e.g. 1e-4,3e-4,1e-3.")
  return rates


def candidate_name(method: str, rate: float) -> str:
  return f"{method} lr {rate:g}"


def run_selection(demo: Any, rates: Sequence[float], method: str,
                  log: Callable[[str], None]) -> dict[str, Any]:
  """Trains the candidates, judges them on validation, writes the choice.

  Args:
    demo: a `demo.Demo` whose stages are complete.
    rates: candidate online learning rates.
    method: a demo method name (e.g. "MD1").
    log: progress printer.

  Returns:
    The contents of selection.json.

  Raises:
    ConfigError: an unknown method, or the demo's SFT / PM not finished.
  """
  from nlhf_jax import demo as demo_lib  # pylint: disable=g-import-not-at-top
  config, paths = demo.config, demo.paths
  known = {e.name: e for e in demo_lib.experiments(
      dataclasses.replace(config, methods=tuple(
          m.name for m in demo_lib.METHODS)))}
  if method not in known:
    raise ConfigError(f"--select_method {method!r} is not one of "
                      f"{sorted(known)}.")
  for name, steps in (("sft", config.sft_steps), ("pm", config.pm_steps)):
    if not sweep.is_finished(paths.run_dir(name), steps):
      raise ConfigError(f"The demo's {name} run in {paths.out} is not "
                        "finished; run the demo first.")
  root = os.path.join(paths.out, SELECTION_DIR)
  policies = {}
  for rate in rates:
    online = dataclasses.replace(
        demo_lib.sweep_paths(dataclasses.replace(config, online_lr=rate),
                             paths),
        workdir=os.path.join(root, f"lr_{rate:g}"))
    experiment = known[method]
    run_dir = online.run_dir(experiment)
    name = candidate_name(method, rate)
    if sweep.is_finished(run_dir, config.online_steps):
      log(f"  {name}: complete, skipped.")
    else:
      log(f"  {name}: online run ...")
      sweep.run_experiment(sweep.experiment_run(experiment, online),
                           name=experiment.stem)
    policies[name] = run_dir
  return judge_on_validation(demo, policies, rates, method, root, log)


def judge_on_validation(demo: Any, policies: dict[str, str],
                        rates: Sequence[float], method: str, root: str,
                        log: Callable[[str], None]) -> dict[str, Any]:
  """The validation tournament, its report and selection.json."""
  config, paths = demo.config, demo.paths
  out_dir = os.path.join(root, "report")
  results = pipeline.evaluate(
      policies, sft_dir=paths.run_dir("sft"), pm_dir=paths.run_dir("pm"),
      out_dir=out_dir, num_prompts=config.eval_prompts, split="valid",
      p_star=True, seed=config.seed, log=log)
  star = results["p_star"]
  figures = {}
  for rate in rates:
    cell = star.cell(pipeline.SFT_NAME, candidate_name(method, rate))
    figures[f"{rate:g}"] = {"p_star_vs_sft": cell.win_rate,
                            "ci": [cell.ci_low, cell.ci_high]}
  best = max(rates, key=lambda r: figures[f"{r:g}"]["p_star_vs_sft"])
  selection = {"method": method, "split": "valid",
               "num_prompts": int(star.num_samples[0, 1]),
               "candidates": figures, "selected_learning_rate": best,
               "demo_learning_rate": config.online_lr}
  pipeline.write_summary(
      out_dir, results, title=f"Selecting {method}'s learning rate on "
      "validation prompts", intro=f"Candidates: {', '.join(policies)}; "
      f"selected: {best:g} (highest P*(· ≻ SFT) on validation).")
  with open(os.path.join(root, "selection.json"), "w", encoding="utf-8") as f:
    json.dump(selection, f, indent=1)
  log(f"  selected learning rate {best:g} (demo default "
      f"{config.online_lr:g}): " + ", ".join(
          f"{r} → {v['p_star_vs_sft']:.3f}" for r, v in figures.items()))
  return selection
