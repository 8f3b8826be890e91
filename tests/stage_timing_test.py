"""Tests for per-stage timing: stage marks, prefix programs, the timer.

The prefix programs are checked against the real step on the 2x2x2 mesh:
they compute what the step computes up to the mark (same step RNG), and
the step itself still compiles once. The online job's timing records are
tested in tests/jobs/online_job_test.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nlhf_jax import partitioning
from nlhf_jax import program as program_lib
from nlhf_jax import stage_timing


def _init():
  return lambda: {"w": jnp.ones((8, 4))}


def _marked_step(state, batch, rng):
  """'Samples' noise, 'judges' it, then takes an SGD step on a loss."""
  samples = stage_timing.mark(
      "sampling", batch["x"] + jax.random.normal(rng, batch["x"].shape))
  scores = stage_timing.mark("judging", jnp.tanh(samples).sum(-1))

  def loss_fn(params):
    return jnp.mean((samples @ params["w"]).sum(-1) * scores)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads), {"loss": loss,
                                        "first_sample": samples[0, 0],
                                        "mean_score": jnp.mean(scores)}


def _program(step_fn=_marked_step):
  mesh = partitioning.make_mesh(partitioning.MeshConfig(data=2, fsdp=2,
                                                        model=2))
  return program_lib.build(mesh=mesh, init_fn=_init(), tx=optax.sgd(0.1),
                           step_fn=step_fn, timed_stages=True)


def _args(program):
  state = program.create_state(program.fresh_params())
  batch = jax.device_put({"x": np.arange(64, dtype=np.float32).reshape(
      8, 8) / 64}, program.batch_sharding)
  rng = jax.device_put(jax.random.PRNGKey(3),
                       partitioning.replicated(program.mesh))
  return state, batch, rng


def test_mark_is_the_identity_outside_a_prefix():
  x = jnp.arange(3.0)
  assert stage_timing.mark("sampling", x) is x
  with pytest.raises(ValueError, match="Unknown stage 'update'"):
    stage_timing.mark("update", x)


def test_prefix_returns_the_marked_value_and_stops_there():
  calls = []

  def step(x):
    y = stage_timing.mark("sampling", x + 1)
    calls.append("after sampling")
    return stage_timing.mark("judging", y * 2), "rest"

  assert stage_timing.prefix(step, "sampling")(1) == 2
  assert calls == []
  assert stage_timing.prefix(step, "judging")(1) == 4
  assert calls == ["after sampling"]
  # The marks work again as identities afterwards.
  assert step(1) == (4, "rest")


def test_a_step_without_marks_cannot_be_timed():
  with pytest.raises(ValueError, match="never marks the end of 'judging'"):
    stage_timing.prefix(lambda x: x, "judging")(1.0)


def test_prefixes_compute_what_the_step_computes_on_a_mesh():
  program = _program()
  state, batch, rng = _args(program)
  samples = program.stage_prefixes["sampling"](state, batch, rng)
  scores = program.stage_prefixes["judging"](state, batch, rng)
  _, metrics = program.step(state, batch, rng)
  np.testing.assert_allclose(np.asarray(samples)[0, 0],
                             float(metrics["first_sample"]), rtol=1e-6)
  np.testing.assert_allclose(np.mean(np.asarray(scores)),
                             float(metrics["mean_score"]), rtol=1e-5)
  np.testing.assert_allclose(np.tanh(np.asarray(samples)).sum(-1),
                             np.asarray(scores), rtol=1e-5)
  assert program.num_traces == 1  # Prefix traces are not step traces.


def test_timer_compiles_each_prefix_once_and_records_every_stage():
  program = _program()
  state, batch, rng = _args(program)
  timer = stage_timing.StageTimer(program.stage_prefixes)
  for _ in range(3):
    (state, metrics), record = timer.measure(
        (state, batch, rng), lambda s=state: program.step(s, batch, rng))
    assert set(record) == {"sampling_s", "judging_s", "update_s", "step_s"}
    assert all(np.isfinite(v) for v in record.values()), record
    assert record["step_s"] > 0 and record["sampling_s"] > 0
  assert np.isfinite(float(metrics["loss"]))
  assert sorted(timer._compiled) == ["judging", "sampling"]
  assert program.num_traces == 1
  assert timer.summary().startswith(
      "Seconds per step (median of 3 measured steps, prefix programs): "
      "sampling ")
  assert stage_timing.line(7, timer.records[0]).startswith(
      "stage times at step 7: sampling ")
