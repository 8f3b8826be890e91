"""Tests for checkpoint save/resume, corruption fallback, params-only restore."""

import os
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nlhf_jax import checkpointing
from nlhf_jax import partitioning
from nlhf_jax import program as program_lib
from nlhf_jax.algorithms import sft
from nlhf_jax.models import t5

TINY = t5.T5Config(vocab_size=64, d_model=16, num_heads=2, d_kv=8, d_ff=32,
                   num_encoder_layers=1, num_decoder_layers=1)
_TOKENS = jnp.ones((2, 4), jnp.int32)


def _lm_init(seed=0):
  return lambda: t5.T5(TINY).init(jax.random.PRNGKey(seed), _TOKENS,
                                  _TOKENS)["params"]


def _scorer_init(seed=0):
  return lambda: t5.T5Scorer(TINY).init(jax.random.PRNGKey(seed),
                                        _TOKENS)["params"]


def _mesh():
  return partitioning.make_mesh(partitioning.MeshConfig(data=2, fsdp=2,
                                                        model=2))


_BASE = {}


def _state(seed=0):
  """A sharded TrainState; distinct seeds give distinct parameters.

  The sharded initialisation is compiled once and shifted per seed (each
  compile of the initialiser costs seconds on CPU).
  """
  if "state" not in _BASE:
    net = t5.T5(TINY)
    program = program_lib.build(mesh=_mesh(), init_fn=_lm_init(),
                                tx=optax.adamw(1e-3),
                                step_fn=sft.make_train_step(net))
    _BASE["state"] = (program.create_state(program.fresh_params()),
                      program.state_shardings)
  state, shardings = _BASE["state"]
  params = jax.tree.map(lambda p: p + 0.01 * seed, state.params)
  return state.replace(params=params, step=state.step + seed), shardings


def _abstract(state):
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      state)


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _save_steps(tmp_path, steps, keep=3):
  ckpt = checkpointing.Checkpointer(
      str(tmp_path), checkpointing.CheckpointConfig(every_steps=1, keep=keep))
  states = {}
  for step in steps:
    state, _ = _state(seed=step)
    ckpt.save(step, state, {"epoch": 0, "batch_in_epoch": step})
    states[step] = state
  return ckpt, states


def test_save_and_restore_latest_round_trip_with_data_position(tmp_path):
  ckpt, states = _save_steps(tmp_path, [1, 2, 3, 4], keep=2)
  assert ckpt.all_steps() == [3, 4]
  restored = ckpt.restore_latest(_abstract(states[4]))
  assert restored.step == 4
  assert restored.data_state == {"epoch": 0, "batch_in_epoch": 4}
  _assert_trees_equal(restored.state, states[4])
  assert isinstance(restored.state, program_lib.TrainState)
  leaf = restored.state.params["encoder"]["layers_0"]["attention"]["query"]
  assert leaf.sharding == states[4].params["encoder"]["layers_0"][
      "attention"]["query"].sharding


def test_truncated_file_in_latest_checkpoint_falls_back(tmp_path, capsys):
  ckpt, states = _save_steps(tmp_path, [1, 2])
  step_dir = os.path.join(ckpt.directory, "2")
  victim = max((os.path.join(r, f) for r, _, fs in os.walk(step_dir)
                for f in fs if f != checkpointing.MANIFEST),
               key=os.path.getsize)
  with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 2)
  restored = ckpt.restore_latest(_abstract(states[2]))
  assert restored.step == 1
  _assert_trees_equal(restored.state, states[1])
  out = capsys.readouterr().out
  assert "step 2" in out and "falling back" in out and "bytes" in out
  # The bad checkpoint is moved aside, so step 2 can be saved again.
  assert ckpt.all_steps() == [1]
  assert os.listdir(os.path.join(tmp_path,
                                 checkpointing.QUARANTINE_SUBDIR))
  ckpt.save(2, states[2], {})
  assert ckpt.all_steps() == [1, 2]


def test_same_size_corruption_is_caught_by_crc(tmp_path, capsys):
  ckpt, states = _save_steps(tmp_path, [1, 2])
  step_dir = os.path.join(ckpt.directory, "2", "state")
  victim = max((os.path.join(r, f) for r, _, fs in os.walk(step_dir)
                for f in fs), key=os.path.getsize)
  with open(victim, "r+b") as f:
    data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    f.seek(0)
    f.write(data)
  restored = ckpt.restore_latest(_abstract(states[2]))
  assert restored.step == 1
  assert "CRC32" in capsys.readouterr().out


def test_checkpoint_without_manifest_counts_as_half_written(tmp_path, capsys):
  ckpt, states = _save_steps(tmp_path, [1, 2])
  os.remove(os.path.join(ckpt.directory, "2", checkpointing.MANIFEST))
  restored = ckpt.restore_latest(_abstract(states[2]))
  assert restored.step == 1
  assert "did not finish" in capsys.readouterr().out


def test_restore_latest_without_checkpoints_returns_none(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path),
                                    checkpointing.CheckpointConfig())
  state, _ = _state()
  assert ckpt.restore_latest(_abstract(state)) is None


def test_restore_params_only_into_a_scorer(tmp_path):
  _, states = _save_steps(tmp_path, [5])
  boxed = jax.eval_shape(_scorer_init())
  shardings = partitioning.logical_shardings(boxed, _mesh())
  abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      nn.unbox(boxed), shardings)
  params = checkpointing.restore_params(
      str(tmp_path), abstract, allow_missing=("score_head",),
      ignore_unused=("logits_dense",))
  assert "score_head" not in params
  _assert_trees_equal(params["encoder"], states[5].params["encoder"])
  with pytest.raises(ValueError, match="missing from the checkpoint"):
    checkpointing.restore_params(str(tmp_path), abstract,
                                 ignore_unused=("logits_dense",))
  with pytest.raises(ValueError, match="does not have"):
    checkpointing.restore_params(str(tmp_path), abstract,
                                 allow_missing=("score_head",))


def test_restore_params_shape_mismatch_names_the_parameter(tmp_path):
  _save_steps(tmp_path, [1])
  bigger = t5.T5Config(**{**TINY.__dict__, "d_ff": 48})
  boxed = jax.eval_shape(lambda: t5.T5(bigger).init(
      jax.random.PRNGKey(0), _TOKENS, _TOKENS)["params"])
  abstract = nn.unbox(boxed)
  with pytest.raises(ValueError, match=r"mlp/wi_0/kernel: checkpoint"):
    checkpointing.restore_params(str(tmp_path), abstract)


def test_load_initial_params_from_our_checkpoint_fills_new_head(tmp_path):
  _, states = _save_steps(tmp_path, [3])
  mesh = _mesh()
  boxed = jax.eval_shape(_scorer_init())
  shardings = partitioning.logical_shardings(boxed, mesh)
  abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      nn.unbox(boxed), shardings)
  fresh_params = partitioning.sharded_init(_scorer_init(seed=9), mesh)[0]
  fresh = lambda: fresh_params
  params = checkpointing.load_initial_params(
      checkpointing.InitConfig(path=str(tmp_path)), TINY, abstract, fresh,
      allow_missing=("score_head",), ignore_unused=("logits_dense",))
  _assert_trees_equal(params["decoder"], states[3].params["decoder"])
  _assert_trees_equal(params["score_head"], fresh_params["score_head"])


def test_init_config_validates_path_and_format(tmp_path):
  with pytest.raises(ValueError, match="does not exist"):
    checkpointing.InitConfig(path=str(tmp_path / "nope"))
  with pytest.raises(ValueError, match="format"):
    checkpointing.InitConfig(format="pytorch")


def test_checkpoint_config_validation():
  with pytest.raises(ValueError, match="keep"):
    checkpointing.CheckpointConfig(keep=0)
  with pytest.raises(ValueError, match="integrity"):
    checkpointing.CheckpointConfig(integrity="md5")


def test_preemption_watcher_flags_sigterm_and_restores_handler():
  previous = signal.getsignal(signal.SIGTERM)
  with checkpointing.PreemptionWatcher() as watcher:
    assert not watcher.should_stop(0)
    os.kill(os.getpid(), signal.SIGTERM)
    assert watcher.should_stop(1)
  assert signal.getsignal(signal.SIGTERM) == previous
