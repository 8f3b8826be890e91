"""Tests for the sweep runner: the commands for gin_configs/experiments (dry
run, local and through the pod launcher), errors, and one real experiment
for two steps through the entry point, skipped when re-run, then the
tournament over it (exact P* and the preference model)."""

import csv
import dataclasses
import os
import shlex
import subprocess
import sys

import pytest

from nlhf_jax import checkpointing
from nlhf_jax import main as main_lib
from nlhf_jax import run_spec
from nlhf_jax import sweep
from nlhf_jax.data import jsonl_sources
from nlhf_jax.data import synthetic
from nlhf_jax.data import vocab as vocab_lib
from nlhf_jax.errors import ConfigError
from nlhf_jax.models import init as model_init
from nlhf_jax.models import preference as pm_lib
from nlhf_jax.models import t5

EXPERIMENTS = os.path.join(main_lib.REPO_ROOT, "gin_configs", "experiments")
TABLE1 = ["RLHF", "SP", "MD1", "MD2", "MD3", "MD4", "MD5", "MD6", "MD7",
          "BR", "EMA1", "EMA2"]
TINY = [("vocab_size", 384), ("d_model", 16), ("num_heads", 1),
        ("d_kv", 16), ("d_ff", 32), ("num_encoder_layers", 1),
        ("num_decoder_layers", 1)]


def _args(tmp, *extra):
  return ["--experiments", EXPERIMENTS,
          "--model_gin", "gin_configs/models/tiny.gin",
          "--data_dir", f"{tmp}/world", "--vocabulary", f"{tmp}/sp.model",
          "--sft_dir", f"{tmp}/sft", "--pm_dir", f"{tmp}/pm",
          "--rm_dir", f"{tmp}/rm", "--workdir", f"{tmp}/sweep", *extra]


def test_discover_orders_table1_first_with_the_paper_names():
  experiments = sweep.discover(EXPERIMENTS)
  files = sorted(f[:-4] for f in os.listdir(EXPERIMENTS) if f.endswith(".gin"))
  assert sorted(e.stem for e in experiments) == files
  assert [e.name for e in experiments[:len(TABLE1)]] == TABLE1
  assert [e.name for e in experiments[len(TABLE1):len(TABLE1) + 5]] == [
      "IPO", "IPO-MD", "EGPO", "Prox", "MPO"]
  assert {e.stem for e in experiments if e.uses_reward_model} == {
      f for f in files if f.startswith("rlhf_")}
  only = sweep.discover(EXPERIMENTS, ["nash_md_beta_0*", "rlhf_tau_005"])
  assert [e.name for e in only] == ["RLHF", "SP", "MD1", "MD2", "MD3", "MD4",
                                    "MD5", "MD6", "MD7"]


def test_dry_run_prints_one_entry_point_command_per_experiment(
    tmp_path, capsys):
  assert sweep.main(_args(tmp_path, "--dry_run", "--gin.TRAIN_STEPS=7")) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  experiments = sweep.discover(EXPERIMENTS)
  assert len(lines) == len(experiments)
  for line, experiment in zip(lines, experiments):
    words = shlex.split(line)
    assert words[1:3] == ["-m", "nlhf_jax.main"]
    judge = "rm" if experiment.uses_reward_model else "pm"
    assert words[3:] == [
        f"--gin_file={experiment.path}",
        "--gin_file=gin_configs/models/tiny.gin",
        f'--gin.DATA_DIR="{tmp_path}/world"',
        f'--gin.VOCABULARY="{tmp_path}/sp.model"',
        f'--gin.SFT_DIR="{tmp_path}/sft"',
        f'--gin.JUDGE_DIR="{tmp_path}/{judge}"',
        f'--gin.WORKDIR="{tmp_path}/sweep/runs/{experiment.stem}"',
        "--gin.TRAIN_STEPS=7"]
  assert not os.path.exists(tmp_path / "sweep")  # Nothing ran.


def test_dry_run_through_the_pod_launcher(tmp_path, capsys):
  assert sweep.main(_args(tmp_path, "--dry_run", "--only", "nash_ema_*",
                          "--launcher", "launch/run_on_pod.sh")) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert [shlex.split(l)[:3] for l in lines] == [
      ["launch/run_on_pod.sh", "--name=nash_ema_decay_0999", "--"],
      ["launch/run_on_pod.sh", "--name=nash_ema_decay_09995", "--"]]


def test_errors_are_reported(tmp_path, capsys):
  with pytest.raises(SystemExit) as exc:
    sweep.main(_args(tmp_path, "--dry_run", "--only", "nope*"))
  assert exc.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("Config error: No experiment gin files"), err
  paths = sweep.SweepPaths(("gin_configs/models/tiny.gin",), "d", "v", "s",
                           "p", None, str(tmp_path))
  rlhf = sweep.discover(EXPERIMENTS, ["rlhf_tau_005"])[0]
  with pytest.raises(ConfigError, match="--rm_dir"):
    sweep.experiment_argv(rlhf, paths)
  with pytest.raises(ConfigError, match="quotes"):
    sweep.gin_string('a"b')
  with pytest.raises(SystemExit):
    sweep.main(_args(tmp_path, "--bogus"))


def test_train_steps_from_bindings_and_runs_as_gin_files_plus_bindings(
    tmp_path):
  paths = sweep.SweepPaths(("gin_configs/models/tiny.gin",), "d", "v", "s",
                           "p", None, str(tmp_path),
                           ("TRAIN_STEPS=5", "SEED=1", "TRAIN_STEPS = 7"))
  assert paths.train_steps() == 7
  bare = sweep.SweepPaths((), "d", "v", "s", "p", None, "w")
  assert bare.train_steps() is None
  with pytest.raises(ConfigError, match="TRAIN_STEPS must be an integer"):
    dataclasses.replace(bare, bindings=("TRAIN_STEPS=%STEPS",)).train_steps()
  md4 = sweep.discover(EXPERIMENTS, ["nash_md_beta_05"])[0]
  run = sweep.experiment_run(md4, paths)
  assert run.gin_files == (md4.path, "gin_configs/models/tiny.gin")
  assert run.bindings[-3:] == paths.bindings
  assert run.argv() == sweep.experiment_argv(md4, paths)
  assert not sweep.is_finished(paths.run_dir(md4))  # Not started: no spec.


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, random_params):
  """A 400-post world, its vocabulary, random SFT and PM checkpoints with
  the run specs their jobs would write (the tournament reads them)."""
  tmp = tmp_path_factory.mktemp("sweep")
  synthetic.generate(str(tmp / "world"), seed=2, size=400)
  vocab_lib.train_from_data_dir(str(tmp / "world"), str(tmp / "sp"), 384)
  config = t5.T5Config(**dict(TINY))
  world, vocab = str(tmp / "world"), str(tmp / "sp.model")
  specs = {
      "sft": run_spec.make("sft", models={"policy": config},
                           data=jsonl_sources.SftJsonlSource(
                               world, vocab, input_length=64,
                               target_length=16)),
      "pm": run_spec.make("preference_model", models={"judge": config},
                          data=jsonl_sources.PreferenceJsonlSource(
                              world, vocab, input_length=64,
                              target_length=16),
                          layout=pm_lib.LayoutConfig(length=96))}
  for name, init in (("sft", model_init.init_fn(t5.T5(config), 0)),
                     ("pm", model_init.scorer_init_fn(t5.T5Scorer(config), 0))):
    ckpt = checkpointing.Checkpointer(str(tmp / name),
                                      checkpointing.CheckpointConfig())
    ckpt.save(1, {"params": random_params(init, len(name))}, {})
    ckpt.close()
    run_spec.write(str(tmp / name), specs[name])
  return tmp


def _sweep_cli(args):
  """`python -m nlhf_jax.sweep ARGS` on one CPU device, cheapest XLA
  optimisation (compilation dominates two steps); returns stdout."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS="--xla_backend_optimization_level=0 "
                       "--xla_llvm_disable_expensive_passes=true")
  proc = subprocess.run([sys.executable, "-m", "nlhf_jax.sweep", *args],
                        cwd=main_lib.REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def test_one_experiment_runs_then_is_skipped_then_judged(inputs):
  args = _args(inputs, "--only", "nash_md_beta_05", "--p_star",
               "--eval_prompts", "6", "--gin.TRAIN_STEPS=2",
               "--gin.BATCH_SIZE=8", "--gin.INPUT_LENGTH=64",
               "--gin.TARGET_LENGTH=16", "--gin.RESPONSE_LENGTH=8",
               "--gin.PACKED_LENGTH=96", "--gin.LOG_EVERY=1",
               *[f"--gin.t5_tiny/t5.T5Config.{k}={v}" for k, v in TINY])
  out = _sweep_cli(args + ["--stage", "train"])
  assert "MD4: training 2 steps" in out
  run_dir = inputs / "sweep" / "runs" / "nash_md_beta_05"
  assert sweep.is_finished(str(run_dir), 2)
  assert not sweep.is_finished(str(run_dir), 3)
  assert sweep.final_step(str(run_dir)) == 2  # The run spec's train.steps.
  assert sweep.is_finished(str(run_dir))
  assert not sweep.is_finished(str(inputs / "sweep" / "runs" / "nope"))
  out = _sweep_cli(args)
  assert "MD4: finished (2 steps), skipped." in out
  report = inputs / "sweep" / "report" / "report.md"
  assert f"Report: {report}" in out
  for judge in ("p_star", "preference_model"):
    with open(inputs / "sweep" / "report" / judge / "win_rate_cells.csv",
              newline="", encoding="utf-8") as f:
      rows = list(csv.DictReader(f))
    assert {(r["row"], r["column"]) for r in rows} == {("SFT", "MD4"),
                                                        ("MD4", "SFT")}
    assert {r["num_samples"] for r in rows} == {"6"}
    assert sum(float(r["win_rate"]) for r in rows) == pytest.approx(1.0)
  assert "Judged by the learned preference model" in report.read_text()
