"""End to end: `python -m nlhf_jax.demo --quick` (the `make demo` pipeline with
a tiny world and a few steps per stage), then resuming.

The demo runs as a subprocess, as `make demo` does: on one CPU device (the
8 fake devices of conftest are not inherited) and with XLA's cheapest
backend optimisation, because ~12 compilations dominate a quick run and
the quick run's steps are too few for code speed to matter.
"""

import csv
import json
import os
import re
import subprocess
import sys

import gin
import numpy as np
import pytest
from matplotlib import image as mpimg

from nlhf_jax import demo as demo_lib
from nlhf_jax import demo_selection
from nlhf_jax import main as main_lib
from nlhf_jax import sweep
from nlhf_jax.errors import ConfigError

POLICIES = ["SFT", "RLHF", "SP", "MD1", "MD4", "BR", "EMA1"]
STAGES = ["world", "vocab", "worlds", "sft", "pm", "rm", "RLHF", "SP", "MD1", "MD4",
          "BR", "EMA1", "report"]
JUDGES = ("p_star", "preference_model")


def _demo(out, *extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS="--xla_backend_optimization_level=0 "
                       "--xla_llvm_disable_expensive_passes=true")
  proc = subprocess.run(
      [sys.executable, "-m", "nlhf_jax.demo", "--out", str(out), "--quick",
       *extra], cwd=main_lib.REPO_ROOT, env=env, capture_output=True,
      text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _stage_lines(stdout):
  """{stage: 'skipped' | 'ran'} from the '[demo i/n] stage: ...' lines."""
  out = {}
  for name, rest in re.findall(r"^\[demo \d+/\d+\] (\S+): (.*)$", stdout,
                               re.MULTILINE):
    if rest.startswith("complete, skipped"):
      out[name] = "skipped"
    elif rest.startswith("done in"):
      out[name] = "ran"
  return out


def _read_csv(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.reader(f))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("demo")
  return out, _demo(out)


def test_quick_demo_runs_every_stage_and_writes_the_report(first_run):
  out, stdout = first_run
  assert _stage_lines(stdout) == {s: "ran" for s in STAGES}
  report = out / "report" / "report.md"
  assert f"Report: {report}" in stdout
  text = report.read_text()
  assert "Judged by the synthetic world's exact P*" in text
  assert "Judged by the learned preference model" in text
  assert "paper (· ≻ SFT)" in text
  # The finite-answer stage: its table (quick: SP only) and plot.
  assert "### Finite-answer world 'majority'" in text
  assert "| majority | SP |" in text
  assert "Exploitability in the pooled-response game" in text
  plot = mpimg.imread(out / "worlds" / "kl_to_nash_majority.png")
  assert plot.ndim == 3
  for judge in JUDGES:
    matrix = _read_csv(out / "report" / judge / "win_rates.csv")
    assert matrix[0][1:] == POLICIES
    values = np.array([[float(v) for v in row[1:]] for row in matrix[1:]])
    np.testing.assert_allclose(values + values.T, 1.0, atol=1e-12)
    np.testing.assert_array_equal(np.diag(values), 0.5)
    assert np.all((values >= 0) & (values <= 1))
    cells = _read_csv(out / "report" / judge / "win_rate_cells.csv")
    assert len(cells) == 1 + len(POLICIES) * (len(POLICIES) - 1)
    assert {int(r[5]) for r in cells[1:]} == {20}  # All 20 test prompts.
    stats = {r[0]: r for r in _read_csv(
        out / "report" / judge / "policy_stats.csv")[1:]}
    assert list(stats) == POLICIES
    header = _read_csv(out / "report" / judge / "policy_stats.csv")[0]
    kl = {name: float(row[header.index("kl_mean")])
          for name, row in stats.items()}
    assert kl["SFT"] == 0.0  # The reference against itself, exactly.
    heatmap = mpimg.imread(out / "report" / judge / "win_rates.png")
    assert heatmap.ndim == 3 and min(heatmap.shape[:2]) > 100
  curves = sorted(os.listdir(out / "report" / "curves"))
  assert "curve_kl_to_reference.png" in curves
  assert "curve_preference_vs_opponent.png" in curves
  for name in curves:
    assert mpimg.imread(out / "report" / "curves" / name).ndim == 3
  for name in POLICIES:
    lines = (out / "report" / "generations" / f"{name}.jsonl").read_text()
    assert len(lines.splitlines()) == 20


def test_rerun_skips_finished_stages_and_resumes_the_report(first_run):
  out, _ = first_run
  os.remove(out / "report" / "report.md")
  os.remove(out / "report" / "generations" / "MD1.jsonl")
  stdout = _demo(out)
  stages = _stage_lines(stdout)
  assert stages == {**{s: "skipped" for s in STAGES}, "report": "ran"}
  assert "SFT: " in stdout and "exists, reused" in stdout
  assert re.search(r"MD1: 20 summaries in", stdout)  # Only MD1 regenerated.
  assert len(re.findall(r"summaries in", stdout)) == 1
  assert (out / "report" / "report.md").exists()
  again = _demo(out, "--select_learning_rates", "1e-3,3e-3")
  assert set(_stage_lines(again).values()) == {"skipped"}
  # The selection ran after the skipped stages, on validation prompts.
  selection = json.loads((out / "selection" / "selection.json").read_text())
  assert selection["split"] == "valid" and selection["method"] == "MD1"
  assert set(selection["candidates"]) == {"0.001", "0.003"}
  assert selection["selected_learning_rate"] in (1e-3, 3e-3)
  best = max(v["p_star_vs_sft"] for v in selection["candidates"].values())
  assert selection["candidates"][
      f"{selection['selected_learning_rate']:g}"]["p_star_vs_sft"] == best
  assert "selected learning rate" in again
  assert (out / "selection" / "report" / "report.md").exists()


def test_selection_rates_are_checked(tmp_path, capsys):
  assert demo_selection.parse_rates("1e-4, 3e-4") == (1e-4, 3e-4)
  for bad in ("", "x", "1e-4,1e-4", "0,1e-3"):
    with pytest.raises(ConfigError, match="select_learning_rates"):
      demo_selection.parse_rates(bad)
  # An unknown method is refused before any stage runs.
  with pytest.raises(SystemExit) as exit_info:
    demo_lib.main(["--out", str(tmp_path / "out"), "--select_learning_rates",
                   "1e-3", "--select_method", "XYZ"])
  assert exit_info.value.code == 2
  assert "--select_method 'XYZ'" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


def test_other_settings_into_the_same_folder_are_refused(first_run):
  out, _ = first_run
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "nlhf_jax.demo", "--out", str(out), "--quick",
       "--steps_scale", "2"], cwd=main_lib.REPO_ROOT, env=env,
      capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 2
  assert "other settings" in proc.stderr and "sft_steps" in proc.stderr


def _backend_choices(run):
  """(MODEL's lm_head_backward, position_bias_backward, OPTIMIZER) of a run."""
  main_lib.parse_config(list(run.gin_files), list(run.bindings))
  try:
    model = gin.query_parameter("%MODEL").scoped_configurable_fn()
    return (model.lm_head_backward, model.position_bias_backward,
            gin.query_parameter("%OPTIMIZER"))
  finally:
    gin.clear_config()


def test_every_training_stage_uses_the_cpu_backend_file(tmp_path):
  config = demo_lib.DemoConfig()
  paths = demo_lib.DemoPaths(str(tmp_path), config.vocab_size)
  runs = [run for _, _, run in demo_lib.supervised_runs(config, paths)]
  online = demo_lib.sweep_paths(config, paths)
  runs += [sweep.experiment_run(e, online)
           for e in demo_lib.experiments(config)]
  assert len(runs) == 3 + len(demo_lib.METHODS)
  for run in runs:
    assert demo_lib.CPU_GIN in run.gin_files
    assert _backend_choices(run) == ("cpu_barrier", "batch_dot",
                                     "adafactor_fused"), run
