"""Tests for the training loop on a small linear model (fast to compile).

The end-to-end process tests (SIGKILL + resume through the gin entry point,
SIGTERM exit status) are in tests/trainer_process_test.py.
"""

import os
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from nlhf_jax import checkpointing
from nlhf_jax import metrics as metrics_lib
from nlhf_jax import optimizers
from nlhf_jax import partitioning
from nlhf_jax import trainer
from nlhf_jax.data import iterators
from nlhf_jax.errors import ConfigError

DIM, OUT, ROWS = 8, 4, 64


class _Linear(nn.Module):

  @nn.compact
  def __call__(self, x):
    w = self.param("w", nn.with_logical_partitioning(
        nn.initializers.normal(0.1), ("embed", "mlp")), (DIM, OUT))
    return x @ w


def _init():
  return _Linear().init(jax.random.PRNGKey(0), jnp.ones((1, DIM)))["params"]


def _loss(params, batch):
  pred = _Linear().apply({"params": params}, batch["x"])
  return jnp.mean(jnp.square(pred - batch["y"]), axis=-1)


def _step(state, batch, rng):
  noise = 1e-3 * jax.random.normal(rng, batch["x"].shape)
  noisy = dict(batch, x=batch["x"] + noise)  # Uses the step RNG.
  loss, grads = jax.value_and_grad(lambda p: _loss(p, noisy).mean())(
      state.params)
  return state.apply_gradients(grads), {"loss": loss}


_EVALUATOR = trainer.Evaluator(
    step=lambda state, batch: {"sq_error": _loss(state.params, batch)},
    summarize=lambda out: {"mse": float(np.mean(out["sq_error"]))})


def _arrays(poison_rows=()):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(ROWS, DIM)).astype(np.float32)
  y = x @ rng.normal(size=(DIM, OUT)).astype(np.float32)
  x[list(poison_rows)] = np.nan
  return {"x": x, "y": y}


def _config(**kw):
  defaults = dict(steps=12, batch_size=8, log_every=4, tensorboard=False,
                  optimizer=optimizers.OptimizerConfig(name="adamw",
                                                       learning_rate=0.3),
                  checkpoint=checkpointing.CheckpointConfig(every_steps=4,
                                                            keep=5))
  defaults.update(kw)
  return trainer.TrainConfig(**defaults)


_MESH = {}


def _mesh():
  if "mesh" not in _MESH:
    _MESH["mesh"] = partitioning.make_mesh(partitioning.MeshConfig(
        data=2, fsdp=2, model=2))
  return _MESH["mesh"]


def _train(workdir, config=None, arrays=None, seed=1, hooks=(), **kw):
  config = config or _config()
  data = iterators.ArrayIterator(arrays or _arrays(), config.batch_size,
                                 seed=seed)
  eval_data = lambda: iterators.ArrayIterator(
      _arrays(), 24, repeat=False)
  program = trainer.build_program(config, _mesh(), _init, _step)
  return trainer.train(config=config, workdir=str(workdir), program=program,
                       train_data=data,
                       evaluator=_EVALUATOR, eval_data=eval_data,
                       hooks=hooks, **kw)


def _params(result):
  return np.asarray(result.state.params["w"])


def test_training_reduces_loss_compiles_once_and_writes_outputs(tmp_path):
  result = _train(tmp_path, _config(eval_every=6))
  assert result.step == 12 and not result.preempted
  assert result.num_compiles == 1
  records = metrics_lib.read_metrics(str(tmp_path), "train")
  assert [r["step"] for r in records] == [4, 8, 12]
  assert records[-1]["loss"] < 0.5 * records[0]["loss"]
  evals = metrics_lib.read_metrics(str(tmp_path), "eval")
  assert [r["step"] for r in evals] == [6, 12]
  assert evals[-1]["mse"] < evals[0]["mse"]
  assert sorted(int(n) for n in os.listdir(tmp_path / "checkpoints")
                if n.isdigit()) == [4, 8, 12]
  assert (tmp_path / "model_info.txt").read_text().startswith("w\t")
  assert result.state.params["w"].sharding.spec == P("fsdp", "model")


class _Crash(Exception):
  pass


def _crash_at(step_to_crash):
  def hook(step, state):
    del state
    if step == step_to_crash:
      raise _Crash()
  return hook


def test_resume_after_crash_reproduces_uninterrupted_run(tmp_path, capsys):
  reference = _train(tmp_path / "ref")
  with pytest.raises(_Crash):
    _train(tmp_path / "run", hooks=[_crash_at(7)])
  resumed = _train(tmp_path / "run")
  assert "Resumed from the checkpoint at step 4" in capsys.readouterr().out
  assert resumed.num_compiles == 1
  # Same compiled program, same data order (iterator position restored),
  # same step RNG: identical bits on CPU.
  np.testing.assert_array_equal(_params(resumed), _params(reference))


def test_nan_loss_stops_and_names_the_step(tmp_path):
  # Sequential data order: rows 16..23 form the third batch (step 3).
  arrays = _arrays(poison_rows=[17])
  config = _config(checkpoint=checkpointing.CheckpointConfig(every_steps=2))
  with pytest.raises(trainer.NonFiniteLossError, match="at step 3"):
    _train(tmp_path, config, arrays=arrays, seed=None)
  steps = sorted(int(n) for n in os.listdir(tmp_path / "checkpoints")
                 if n.isdigit())
  assert steps == [2]  # Nothing past the bad step was saved.


def test_nan_loss_skip_policy_discards_and_counts(tmp_path):
  arrays = _arrays(poison_rows=[17])
  config = _config(nan_policy="skip")
  result = _train(tmp_path, config, arrays=arrays, seed=None)
  # 8 batches per epoch: steps 3 and 11 see the poisoned row.
  assert result.skipped_steps == 2
  assert result.train_metrics["skipped_nonfinite"] == 2.0
  assert np.all(np.isfinite(_params(result)))
  assert int(result.state.step) == 12


def test_skip_policy_leaves_state_unchanged_on_bad_step(tmp_path):
  arrays = _arrays(poison_rows=list(range(16, 24)))  # All of step 3.
  seen = {}

  def record(step, state):
    if step in (2, 3):
      seen[step] = np.asarray(state.params["w"])

  _train(tmp_path, _config(nan_policy="skip", steps=4), arrays=arrays,
         seed=None, hooks=[record])
  np.testing.assert_array_equal(seen[2], seen[3])


def test_sigterm_saves_checkpoint_and_returns_preempted(tmp_path, capsys):
  def sigterm_at_5(step, state):
    del state
    if step == 5:
      os.kill(os.getpid(), signal.SIGTERM)

  result = _train(tmp_path, hooks=[sigterm_at_5])
  assert result.preempted and result.step == 5
  assert os.path.exists(tmp_path / "checkpoints" / "5" /
                        checkpointing.MANIFEST)
  assert "Received SIGTERM: saved a checkpoint at step 5" in (
      capsys.readouterr().out)
  reference = _train(tmp_path / "ref")
  resumed = _train(tmp_path)
  np.testing.assert_array_equal(_params(resumed), _params(reference))


def test_config_errors_name_the_field():
  with pytest.raises(ConfigError, match="nan_policy"):
    trainer.TrainConfig(nan_policy="ignore")
  with pytest.raises(ConfigError, match="steps"):
    trainer.TrainConfig(steps=0)


def test_batch_size_must_divide_over_data_devices(tmp_path):
  with pytest.raises(ConfigError, match="multiple of the mesh's data x fsdp "
                     "size 4"):
    _train(tmp_path, _config(batch_size=6))
