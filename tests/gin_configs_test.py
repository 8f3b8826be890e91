"""Every file under gin_configs/ parses (a test walks the folder).

Model, mesh and run files parse on their own after the model and mesh files
they may rely on (tiny.gin and cpu8.gin), the way users compose them. The
CPU backend file selects its speedups for every model size; TPU mesh files
keep the portable defaults.
"""

import os

import gin
import pytest

from nlhf_jax import main as main_lib

ROOT = os.path.join(main_lib.REPO_ROOT, "gin_configs")
ALL = sorted(
    os.path.relpath(os.path.join(d, f), main_lib.REPO_ROOT)
    for d, _, files in os.walk(ROOT) for f in files if f.endswith(".gin"))


def test_the_folder_has_the_expected_families():
  names = set(ALL)
  for size in ("tiny", "small", "base", "large", "xl", "xxl"):
    assert f"gin_configs/models/{size}.gin" in names
  assert "gin_configs/mesh/cpu8.gin" in names


@pytest.mark.parametrize("path", ALL)
def test_gin_file_parses(path):
  files = ["gin_configs/models/tiny.gin", "gin_configs/mesh/cpu8.gin", path]
  main_lib.parse_config(files, [])
  # Macros the file defines must evaluate (configs validate on build).
  for name in ("MODEL", "MESH"):
    gin.query_parameter(f"%{name}").scoped_configurable_fn()
  gin.clear_config()


@pytest.mark.parametrize("size,d_model", [("small", 512), ("base", 768),
                                          ("large", 1024), ("xl", 2048),
                                          ("xxl", 4096)])
def test_model_files_bind_published_dimensions(size, d_model):
  main_lib.parse_config([f"gin_configs/models/{size}.gin"], [])
  assert gin.query_parameter(f"t5_{size}/t5.T5Config.d_model") == d_model
  assert gin.query_parameter(f"t5_{size}/t5.T5Config.vocab_size") == 32128
  gin.clear_config()



def _backend_choices(files, bindings=()):
  """(MODEL's lm_head_backward, position_bias_backward, OPTIMIZER)."""
  main_lib.parse_config(files, list(bindings))
  model = gin.query_parameter("%MODEL").scoped_configurable_fn()
  choices = (model.lm_head_backward, model.position_bias_backward,
             gin.query_parameter("%OPTIMIZER"))
  gin.clear_config()
  return choices


@pytest.mark.parametrize("size", ["tiny", "small", "base", "large", "xl",
                                  "xxl"])
def test_cpu_backend_file_selects_the_cpu_speedups_for_every_model(size):
  run, model = "gin_configs/runs/sft.gin", f"gin_configs/models/{size}.gin"
  cpu = "gin_configs/backends/cpu.gin"
  assert _backend_choices([run, model, "gin_configs/mesh/v4_32.gin"]) == (
      "xla", "xla", "adafactor")
  assert _backend_choices([run, model, cpu]) == (
      "cpu_barrier", "batch_dot", "adafactor_fused")
  # A user's binding after the backend file still wins.
  assert _backend_choices([run, model, cpu], ["OPTIMIZER = 'adamw'"]) == (
      "cpu_barrier", "batch_dot", "adamw")


def test_cpu_backend_file_chunks_the_learned_judges_rows():
  run = "gin_configs/runs/nash_md.gin"
  model = "gin_configs/models/tiny.gin"
  main_lib.parse_config([run, model, "gin_configs/mesh/cpu8.gin"], [])
  with pytest.raises(ValueError):  # Unbound: the portable default (None).
    gin.query_parameter("judges.LearnedJudge.row_chunk")
  gin.clear_config()
  main_lib.parse_config([run, model, "gin_configs/backends/cpu.gin"], [])
  assert gin.query_parameter("judges.LearnedJudge.row_chunk") == 16
  gin.clear_config()
