"""Smoke tests of the benchmark commands (not timed tests).

Each benchmark's command line runs with `--smoke` (tiny model, one repeat)
in a subprocess, as a user would run it, and must print one JSON line with
the documented fields and self-consistent numbers. The subprocesses share a
JAX persistent compilation cache in a temporary folder, so programs that
two commands compile identically (the tiny Nash-MD-PG step, the matmuls of
the peak measurement) are compiled once. The figures of a smoke run mean
nothing and are not checked against any target.
"""

import json
import math
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# The peer baseline's Python (torch + trl, benchmarks/peer_requirements.txt).
PEER_PYTHON = os.environ.get("NLHF_PEER_PYTHON", "")
COMMON_KEYS = ("benchmark", "schema_version", "machine", "backend",
               "versions", "config", "memory")


@pytest.fixture(scope="module")
def run_cli(tmp_path_factory):
  """Runs `python -m benchmarks.<module> --smoke ...`; returns its record."""
  cache = str(tmp_path_factory.mktemp("jax_cache"))
  env = dict(os.environ)
  env.update({"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "",
              "TF_CPP_MIN_LOG_LEVEL": "3",
              "JAX_COMPILATION_CACHE_DIR": cache,
              "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
              "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"})

  def run(module, *flags):
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--smoke", *flags],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
        check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one JSON line, got: {proc.stdout!r}"
    record = json.loads(lines[0])
    for key in COMMON_KEYS:
      assert key in record, f"{module}: missing {key!r}"
    assert record["config"]["smoke"] is True
    assert record["backend"]["backend"] == "cpu"
    assert record["versions"]["jax"]
    assert record["machine"]["usable_cores"] >= 1
    assert record["memory"]["host_peak_rss_mib"] > 0
    return record

  return run


def _positive(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _check_timing(timing):
  assert _positive(timing["median_s"])
  assert timing["min_s"] <= timing["median_s"] <= timing["max_s"]


def test_matmul_peak(run_cli):
  record = run_cli("matmul_peak")
  assert record["benchmark"] == "matmul_peak"
  for dtype in ("float32", "bfloat16"):
    result = record["results"][dtype]
    assert _positive(record["peak_flops_per_s"][dtype])
    by_size = result["by_size"]
    assert set(by_size) == {"64", "128"}
    best = max(v["flops_per_s"] for v in by_size.values())
    assert record["peak_flops_per_s"][dtype] == best
    n = result["best_size"]
    assert math.isclose(by_size[str(n)]["flops_per_s"],
                        2 * n ** 3 / by_size[str(n)]["median_s"])


@pytest.mark.parametrize("task,extra", [
    ("sft", ()), ("preference", ()),
    ("sft", ("--optimizer", "adafactor_fused",
             "--lm_head_backward", "cpu_barrier"))])
def test_train_step(run_cli, task, extra):
  record = run_cli("train_step_benchmark", "--task", task, *extra)
  assert record["benchmark"] == f"train_step_{task}"
  choices = dict(zip(extra[::2], extra[1::2]))
  assert record["config"]["optimizer"] == choices.get("--optimizer",
                                                      "adafactor")
  assert record["config"]["model"]["lm_head_backward"] == choices.get(
      "--lm_head_backward", "xla")
  _check_timing(record["timing"])
  step_s = record["timing"]["median_s"]
  cfg = record["config"]
  assert math.isclose(record["examples_per_s"], cfg["batch"] / step_s)
  assert math.isclose(record["model_flops_per_s"],
                      record["model_flops_per_step"] / step_s)
  assert math.isclose(record["mfu"], record["model_flops_per_s"] /
                      record["matmul_peak_flops_per_s"])
  # Analytic matmul FLOPs vs XLA's count (which adds elementwise ops).
  xla = record["xla_flops_per_step"]
  if xla is not None:
    assert 0.5 < record["model_flops_per_step"] / xla <= 1.0


def test_nash_md(run_cli):
  record = run_cli("nash_md_benchmark")
  assert record["benchmark"] == "nash_md_pg_train_step"
  settings = record["config"]["settings"]
  _check_timing(record["fused"])
  step_s = record["median_step_s"]
  assert math.isclose(record["samples_per_s"], settings["batch"] / step_s)
  assert math.isclose(record["generated_tokens_per_s"],
                      2 * settings["batch"] * settings["new_tokens"] / step_s)
  for length in record["mean_response_length"].values():
    assert 1 <= length <= settings["new_tokens"]
  split = record["split"]
  for key in ("sampling_s", "judging_s", "sum_of_parts_s"):
    assert _positive(split[key])
  assert split["update_s"] >= 0
  assert math.isclose(sum(split["fraction"].values()), 1.0)
  assert record["params_policy"] > record["params_preference_model"] > 0


def test_followups(run_cli):
  # Nash-MD-PG's step is in the module's compilation cache (test_nash_md).
  record = run_cli("followups_benchmark", "--algorithms", "nash_md,online_ipo")
  assert record["benchmark"] == "followups_step_time"
  ratios = record["step_time_ratio_to_nash_md"]
  assert set(ratios) == {"nash_md", "online_ipo"} and ratios["nash_md"] == 1.0
  batch = record["config"]["settings"]["batch"]
  for name, result in record["algorithms"].items():
    assert len(result["rounds"]) == record["rounds"] == 1
    _check_timing(result["rounds"][0])
    assert math.isclose(result["samples_per_s"],
                        batch / result["median_step_s"]), name
  # One round: the median ratio is that round's ratio of medians.
  assert math.isclose(ratios["online_ipo"],
                      record["algorithms"]["online_ipo"]["median_step_s"] /
                      record["algorithms"]["nash_md"]["median_step_s"])
  assert record["round_ratios_to_nash_md"]["online_ipo"] == [
      ratios["online_ipo"]]


def test_judge_price(run_cli):
  record = run_cli("judge_benchmark")
  assert record["benchmark"] == "judge_price_nash_md"
  for name in ("preference_model", "host_p_star"):
    _check_timing(record[name]["fused"])
    split = record[name]["split"]
    for key in ("sampling_s", "judging_s", "sum_of_parts_s"):
      assert _positive(split[key]), (name, key)
    assert math.isclose(sum(split["fraction"].values()), 1.0)
  assert math.isclose(
      record["ratio_step_host_over_learned"],
      record["host_p_star"]["median_step_s"] /
      record["preference_model"]["median_step_s"])
  assert math.isclose(
      record["ratio_judging_host_over_learned"],
      record["host_p_star"]["split"]["judging_s"] /
      record["preference_model"]["split"]["judging_s"])


def test_peer_our_half_without_trl(run_cli):
  record = run_cli("peer_nash_md", "--skip_peer", "--no_split")
  assert record["benchmark"] == "peer_nash_md"
  assert record["peer"] is None and record["speedup_samples_per_s"] is None
  assert record["peer_skipped"] == "--skip_peer"
  assert _positive(record["ours_samples_per_s"])
  assert record["ours"]["split"] is None
  fpt = record["decode_flops_per_token"]
  assert _positive(fpt["ours"]) and _positive(fpt["peer"])
  assert math.isclose(fpt["ratio"], fpt["ours"] / fpt["peer"])


def test_peer_without_peer_python_exits_2():
  """Without --peer_python and $NLHF_PEER_PYTHON: exit 2, one-line hint."""
  env = {k: v for k, v in os.environ.items() if k != "NLHF_PEER_PYTHON"}
  env.update({"JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""})
  for flags in ([], ["--peer_python", os.path.join(REPO_ROOT, "absent")]):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.peer_nash_md", "--smoke", *flags],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
        check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert not proc.stdout.strip()
    message = proc.stderr.strip().splitlines()
    assert len(message) == 1, message
    assert "benchmarks/peer_requirements.txt" in message[0]


@pytest.mark.skipif(
    not (PEER_PYTHON and os.path.isfile(PEER_PYTHON)),
    reason="peer environment not given: set NLHF_PEER_PYTHON to a Python "
    "with benchmarks/peer_requirements.txt installed (now "
    f"{PEER_PYTHON or 'unset'!r})")
def test_peer_with_trl(run_cli):
  record = run_cli("peer_nash_md", "--no_split", "--peer_python", PEER_PYTHON)
  peer = record["peer"]
  assert peer["impl"] == "trl-1.12.0-NashMDTrainer"
  assert (peer["batch"], peer["new_tokens"]) == (
      record["config"]["settings"]["batch"],
      record["config"]["settings"]["new_tokens"])
  assert math.isclose(record["speedup_samples_per_s"],
                      record["ours_samples_per_s"] / peer["samples_per_s"])
  assert math.isclose(record["params_ratio"],
                      record["params_policy_ours"] / peer["params_policy"])


def test_decode_roofline(run_cli):
  record = run_cli("decode_roofline")
  assert record["benchmark"] == "decode_roofline"
  assert _positive(record["bandwidth"]["bytes_per_s"])
  (row,) = record["rows"]
  assert row["batch"] == 2
  read = row["bytes_per_step"]
  assert read["total"] == read["weights"] + read["caches"] > 0
  for name, models in (("single", 1), ("mixture", 2)):
    result = row[name]
    _check_timing(result)
    assert math.isclose(result["tokens_per_s"],
                        2 * 4 / result["median_s"])
    assert record["bandwidth_used"] == max(
        record["bandwidth"]["bytes_per_s"],
        record["bandwidth_after"]["bytes_per_s"])
    assert math.isclose(result["fraction"] * record["bandwidth_used"],
                        models * read["total"] * 4 / result["median_s"])
    # The loop alone: (4-token call − 1-token call) / 3 steps.
    loop_ms = 1e3 * (result["median_s"] - result["one_step_call_s"]) / 3
    assert math.isclose(result["loop_step_ms"], loop_ms)
    assert math.isclose(result["loop_fraction"],
                        result["roofline_step_ms"] / loop_ms)
  assert math.isclose(row["mixture_over_single"],
                      row["mixture"]["tokens_per_s"] /
                      row["single"]["tokens_per_s"])


def test_alternate_runs_both_trees_and_removes_its_worktree(tmp_path):
  """One round of `alternate` against HEAD with the matmul smoke run; this
  tree's side alone also times bfloat16 (`--this_args`)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  worktrees = lambda: subprocess.run(
      ["git", "-C", REPO_ROOT, "worktree", "list"], capture_output=True,
      text=True, check=True).stdout
  before = worktrees()
  proc = subprocess.run(
      [sys.executable, "-m", "benchmarks.alternate", "--base", "HEAD",
       "--rounds", "1", "--field", "peak_flops_per_s.float32",
       "--this_args=--dtypes float32,bfloat16",
       "benchmarks.matmul_peak", "--", "--smoke", "--dtypes", "float32"],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  record = json.loads(proc.stdout.strip().splitlines()[-1])
  assert record["benchmark"] == "alternate"
  base, this = record["values"]["base"], record["values"]["this"]
  assert len(base) == len(this) == 1 and _positive(base[0])
  assert record["runs"]["this"][0]["peak_flops_per_s"]["float32"] == this[0]
  assert record["runs"]["base"][0]["config"]["dtypes"] == ["float32"]
  assert record["runs"]["this"][0]["config"]["dtypes"] == ["float32",
                                                           "bfloat16"]
  assert math.isclose(record["ratio"], base[0] / this[0])
  assert "round 1/1 base" in proc.stderr
  assert worktrees() == before
