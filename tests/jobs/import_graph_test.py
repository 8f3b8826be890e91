"""The layers point one way: models <- algorithms <- jobs <- tools.

Reads the import statements of every module (AST, nothing is imported), so
a forbidden dependency fails here whether or not any test exercises it.
"""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "..", "nlhf_jax")

# What a pure algorithm module must never import (prefix match).
# `nlhf_jax.data` covers the data sources and iterators (`data.iterators`,
# `data.jsonl_sources`, `data.seqio_source`); the special token ids they
# share with sampling live in `nlhf_jax.tokens`, which algorithms may import.
FORBIDDEN_IN_ALGORITHMS = (
    "gin", "nlhf_jax.trainer", "nlhf_jax.checkpointing",
    "nlhf_jax.checkpoint_import", "nlhf_jax.data", "nlhf_jax.testing",
    "nlhf_jax.jobs", "nlhf_jax.main", "nlhf_jax.sweep", "nlhf_jax.demo",
    "nlhf_jax.aot")
# Models are the bottom layer of the learning code.
FORBIDDEN_IN_MODELS = ("gin", "nlhf_jax.algorithms", "nlhf_jax.jobs",
                       "nlhf_jax.trainer", "nlhf_jax.checkpointing")
# Evaluation reads checkpoints through the model side (models/, program),
# never through a training algorithm or a job.
FORBIDDEN_IN_EVALUATION = ("nlhf_jax.algorithms", "nlhf_jax.jobs",
                           "nlhf_jax.trainer")
# Finite-answer worlds sit beside the algorithms, below the jobs (which gin
# wires them into); their populations and targets are NumPy only.
FORBIDDEN_IN_FINITE_WORLD = ("gin", "nlhf_jax.jobs", "nlhf_jax.trainer",
                             "nlhf_jax.main", "nlhf_jax.demo")
FORBIDDEN_IN_EXACT_WORLD = FORBIDDEN_IN_FINITE_WORLD + ("jax", "flax",
                                                        "nlhf_jax.models")


def _modules(subpackage):
  root = os.path.join(PACKAGE, subpackage)
  return sorted(os.path.join(root, f) for f in os.listdir(root)
                if f.endswith(".py"))


def imported_names(path):
  """Fully qualified names of the modules (and `from` targets) imported."""
  tree = ast.parse(open(path, encoding="utf-8").read(), path)
  names = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names += [f"{node.module}.{alias.name}" for alias in node.names]
  return names


def _violations(path, forbidden):
  return [name for name in imported_names(path)
          if any(name == f or name.startswith(f + ".") for f in forbidden)]


@pytest.mark.parametrize("path", _modules("algorithms"),
                         ids=os.path.basename)
def test_algorithms_import_no_trainer_checkpointing_data_or_gin(path):
  assert _violations(path, FORBIDDEN_IN_ALGORITHMS) == []


@pytest.mark.parametrize("path", _modules("models"), ids=os.path.basename)
def test_models_import_no_algorithm_or_job(path):
  assert _violations(path, FORBIDDEN_IN_MODELS) == []


@pytest.mark.parametrize("path", _modules("evaluation"),
                         ids=os.path.basename)
def test_evaluation_imports_no_algorithm_job_or_trainer(path):
  assert _violations(path, FORBIDDEN_IN_EVALUATION) == []


@pytest.mark.parametrize("path", _modules("finite_world"),
                         ids=os.path.basename)
def test_finite_world_imports_no_job_trainer_or_gin(path):
  numpy_only = os.path.basename(path) in ("population.py", "targets.py")
  forbidden = (FORBIDDEN_IN_EXACT_WORLD if numpy_only else
               FORBIDDEN_IN_FINITE_WORLD)
  assert _violations(path, forbidden) == []


def test_the_checker_sees_forbidden_imports(tmp_path):
  """The walk finds `import`, `from x import y` and nested imports."""
  module = tmp_path / "bad.py"
  module.write_text("import gin\nfrom nlhf_jax import trainer\n"
                    "def f():\n  from nlhf_jax.data import vocab\n")
  assert _violations(str(module), FORBIDDEN_IN_ALGORITHMS) == [
      "gin", "nlhf_jax.trainer", "nlhf_jax.data.vocab"]


def test_jobs_package_exists_and_is_the_only_online_wiring():
  jobs = {os.path.basename(p) for p in _modules("jobs")}
  assert {"supervised.py", "online_job.py"} <= jobs
  assert not os.path.exists(os.path.join(PACKAGE, "algorithms",
                                         "online_jobs.py"))


def test_data_modules_live_in_the_data_package():
  """The iterators and JSONL sources moved into `nlhf_jax/data/`."""
  for name in ("data_iterators.py", "jsonl_data.py"):
    assert not os.path.exists(os.path.join(PACKAGE, name))
  for name in ("iterators.py", "jsonl_sources.py", "tldr_files.py"):
    assert os.path.exists(os.path.join(PACKAGE, "data", name))


def test_token_ids_module_depends_on_nothing():
  """`nlhf_jax.tokens` is what algorithms and data may both import."""
  assert imported_names(os.path.join(PACKAGE, "tokens.py")) == []
