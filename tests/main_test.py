"""The gin entry point: runs a job, and stops on config errors before compute."""

import os

import gin
import pytest

from nlhf_jax import main as main_lib

DESCRIBE = ["--gin_file=gin_configs/runs/describe.gin",
            "--gin_file=gin_configs/models/tiny.gin",
            "--gin_file=gin_configs/mesh/cpu8.gin"]


def _config_error(capsys, argv):
  with pytest.raises(SystemExit) as exc:
    main_lib.main(argv)
  assert exc.value.code == 2
  return capsys.readouterr().err


def test_describe_job_runs_and_writes_config(tmp_path, capsys):
  info = main_lib.main(DESCRIBE + [f"--gin.WORKDIR='{tmp_path}'"])
  assert info["mesh"] == {"data": 2, "fsdp": 2, "model": 2}
  assert info["num_params"] > 0
  assert "parameters; mesh" in capsys.readouterr().out
  assert (tmp_path / "model_info.txt").exists()
  config = (tmp_path / "config.gin").read_text()
  assert "d_model = 64" in config


def test_missing_gin_file_is_named(capsys):
  err = _config_error(capsys, ["--gin_file=gin_configs/nope.gin"])
  assert "gin_configs/nope.gin" in err and "not found" in err


def test_unknown_binding_is_named(capsys):
  err = _config_error(capsys, DESCRIBE + ["--gin.model_info.describe.foo=1"])
  assert "model_info.describe.foo = 1" in err


def test_unparsable_value_is_named(capsys):
  err = _config_error(capsys, DESCRIBE + ["--gin.WORKDIR=/tmp/x"])
  assert "WORKDIR = /tmp/x" in err and "quotes" in err


def test_out_of_range_value_stops_before_compute(capsys):
  err = _config_error(capsys, DESCRIBE + ["--gin.t5_tiny/t5.T5Config.d_model=-4"])
  assert "T5Config.d_model must be a positive int" in err
  assert "t5_tiny" in err


def test_mesh_device_mismatch_is_a_config_error(capsys):
  err = _config_error(capsys,
                      DESCRIBE + ["--gin_file=gin_configs/mesh/v5e_64.gin"])
  assert "needs 64 devices, but 8 devices are available" in err


def test_bad_flag_shape(capsys):
  err = _config_error(capsys, DESCRIBE + ["--gin.WORKDIR"])
  assert "--gin.NAME=VALUE" in err


def teardown_module():
  gin.clear_config()


def test_help_example_command_runs(capsys):
  """The command quoted at the top of `--help` works as printed."""
  lines = main_lib.__doc__.split("\n\n")[1].replace("\\\n", " ").split()
  assert lines[:3] == ["python", "-m", "nlhf_jax.main"]
  info = main_lib.main(lines[3:])
  assert info["num_params"] > 0
  assert "parameters; mesh" in capsys.readouterr().out


def test_run_config_raises_config_error_instead_of_exiting():
  with pytest.raises(main_lib.ConfigError, match="TrainConfig.steps"):
    main_lib.run_config(["gin_configs/runs/describe.gin",
                         "gin_configs/models/tiny.gin",
                         "gin_configs/mesh/data_parallel.gin"],
                        ["from nlhf_jax import trainer",
                         "trainer.TrainConfig.steps = 0",
                         "model_info.describe.model = @trainer.TrainConfig()"])
