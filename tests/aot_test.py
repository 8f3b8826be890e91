"""Ahead-of-time compilation of the real train steps for a TPU topology."""

import json

import pytest

pytest.importorskip("libtpu", reason="libtpu (test extra) compiles for TPU")

from nlhf_jax import aot  # pylint: disable=g-import-not-at-top
from nlhf_jax import aot_memory  # pylint: disable=g-import-not-at-top
from nlhf_jax import partitioning  # pylint: disable=g-import-not-at-top
from nlhf_jax import trainer  # pylint: disable=g-import-not-at-top
from nlhf_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
from nlhf_jax.models import t5  # pylint: disable=g-import-not-at-top


def test_tiny_config_compiles_for_a_small_topology(tmp_path, capsys):
  out = tmp_path / "aot.jsonl"
  rows = aot.main([
      "--gin_file=gin_configs/models/tiny.gin",
      "--gin_file=gin_configs/mesh/data_parallel.gin",
      "--topology=v5e:2x2", "--programs=sft,nash_prox", "--batch_size=4",
      "--input_length=16", "--target_length=4", f"--json={out}"])
  assert [r["program"] for r in rows] == ["sft", "nash_prox"]
  for row in rows:
    assert row["num_devices"] == 4
    assert row["mesh"] == {"data": 4, "fsdp": 1, "model": 1}
    assert row["hbm_bytes"] == 16 * aot_memory.GIB
    assert row["fits"] is True
    assert row["batch_size"] == 4 and row["input_length"] == 16
    assert 0 < row["total_bytes"] < 64 * 1024 ** 2
    # The step's arguments include at least the parameters (f32).
    assert row["argument_bytes"] > 4 * 200_000
  assert "DOES NOT FIT" not in capsys.readouterr().out
  assert len(out.read_text().splitlines()) == 2
  json.loads(out.read_text().splitlines()[0])


def test_unknown_topology_is_a_config_error(capsys):
  with pytest.raises(SystemExit) as exc:
    aot.main(["--gin_file=gin_configs/models/tiny.gin",
              "--topology=v99:1x1", "--programs=sft"])
  assert exc.value.code == 2
  assert "v99:1x1" in capsys.readouterr().err


def test_batch_that_does_not_split_over_the_mesh_is_a_config_error(capsys):
  with pytest.raises(SystemExit) as exc:
    aot.main(["--gin_file=gin_configs/models/tiny.gin",
              "--gin_file=gin_configs/mesh/data_parallel.gin",
              "--topology=v5e:2x2", "--programs=sft", "--batch_size=6"])
  assert exc.value.code == 2
  err = capsys.readouterr().err
  assert "--batch_size=6" in err and "multiple of 4" in err


def test_the_compiled_step_is_the_trainers_guarded_program():
  """aot compiles trainer.build_program's step: metrics carry 'finite'."""
  tiny = t5.T5Config(vocab_size=64, d_model=16, num_heads=2, d_kv=8, d_ff=32,
                     num_encoder_layers=1, num_decoder_layers=1)
  devices = aot_memory.topology_devices("v5e:2x2")
  mesh = partitioning.make_mesh(partitioning.MeshConfig(-1, 1, 1), devices)
  compiled = aot.compile_sft(tiny, mesh, aot.Shapes(4, 8, 4),
                             trainer.TrainConfig(batch_size=4))
  _, metrics = compiled.out_info
  assert {"loss", "finite"} <= set(metrics)


def test_cpu_backend_options_are_refused_for_tpu(capsys):
  with pytest.raises(SystemExit) as exc:
    aot.main(["--gin_file=gin_configs/models/tiny.gin",
              "--gin_file=gin_configs/backends/cpu.gin",
              "--topology=v5e:2x2", "--programs=sft"])
  assert exc.value.code == 2
  assert "lm_head_backward='cpu_barrier'" in capsys.readouterr().err


def test_the_cpu_position_bias_backward_is_refused_for_tpu():
  tiny = t5.T5Config(vocab_size=64, d_model=16, num_heads=2, d_kv=8,
                     d_ff=32, num_encoder_layers=1, num_decoder_layers=1,
                     position_bias_backward="batch_dot")
  with pytest.raises(ConfigError, match="position_bias_backward='batch_dot'"):
    aot.compile_programs("v5e:2x2", tiny, tiny,
                         partitioning.MeshConfig(-1, 1, 1), programs=("sft",))
