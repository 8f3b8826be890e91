"""Config errors through the CLI, as a new user meets them: exit code 2, one
line on stderr that names the binding or file, no traceback, no compute."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(argv, workdir):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS="--xla_force_host_platform_device_count=8")
  return subprocess.run(
      [sys.executable, "-m", "nlhf_jax.main", *argv,
       f"--gin.WORKDIR='{workdir}'"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


CASES = {
    # name: (extra argv given the world, text the message must contain)
    "zero_steps": (lambda d, v: ["--gin.TRAIN_STEPS=0"],
                   "TrainConfig.steps must be >= 1"),
    "missing_data_dir": (lambda d, v: ["--gin.DATA_DIR='/nonexistent'"],
                         "'/nonexistent' is not a directory"),
    "negative_batch": (lambda d, v: ["--gin.BATCH_SIZE=-4"],
                       "TrainConfig.batch_size must be >= 1"),
    "missing_vocabulary": (lambda d, v: [f"--gin.VOCABULARY='{d}/no.model'"],
                           "no.model' is not a file"),
    "mesh_does_not_fit": (
        lambda d, v: ["--gin_file=gin_configs/mesh/v5e_64.gin"],
        "needs 64 devices"),
    "batch_does_not_split": (
        lambda d, v: ["--gin_file=gin_configs/mesh/cpu8.gin",
                      "--gin.BATCH_SIZE=6"],
        "TrainConfig.batch_size=6 must be a multiple"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_error_exits_2_with_one_line(name, small_world, tmp_path):
  data_dir, vocab = small_world
  extra, expected = CASES[name]
  argv = ["--gin_file=gin_configs/runs/sft.gin",
          "--gin_file=gin_configs/models/tiny.gin",
          f"--gin.DATA_DIR='{data_dir}'", f"--gin.VOCABULARY='{vocab}'",
          *extra(data_dir, vocab)]
  proc = _cli(argv, tmp_path / "run")
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert "Traceback" not in proc.stderr
  assert lines[-1].startswith("Config error: ") and expected in lines[-1], (
      proc.stderr[-2000:])
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_run_file_without_model_file_names_the_macro(small_world, tmp_path):
  data_dir, vocab = small_world
  proc = _cli(["--gin_file=gin_configs/runs/sft.gin",
               f"--gin.DATA_DIR='{data_dir}'", f"--gin.VOCABULARY='{vocab}'"],
              tmp_path / "run")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert "macro MODEL is not set" in proc.stderr.strip().splitlines()[-1]


# The other entry points share the contract (nlhf_jax.cli); each case stops
# at its first check, before any compute.
OTHER_CLIS = {
    "sweep": (["nlhf_jax.sweep", "--experiments", "/nonexistent",
               "--model_gin", "gin_configs/models/tiny.gin", "--data_dir",
               "d", "--vocabulary", "v", "--sft_dir", "s", "--pm_dir", "p",
               "--workdir", "w", "--dry_run"],
              "Config error: --experiments '/nonexistent' is not a directory"),
    "demo": (["nlhf_jax.demo", "--out", "{tmp}", "--quick", "--steps_scale",
              "0"], "Config error: --steps_scale must be > 0"),
    "aot": (["nlhf_jax.aot", "--gin_file=gin_configs/models/tiny.gin"],
            "Config error: --topology is required"),
}


@pytest.mark.parametrize("name", sorted(OTHER_CLIS))
def test_other_entry_points_exit_2_with_one_line(name, tmp_path):
  argv, expected = OTHER_CLIS[name]
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(
      [sys.executable, "-m", *[a.format(tmp=tmp_path / "out") for a in argv]],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert lines[-1].startswith(expected), proc.stderr[-2000:]
