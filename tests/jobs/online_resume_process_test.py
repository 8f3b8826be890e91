"""The follow-up online steps resume bit for bit after SIGKILL, as processes.

For IPO-MD, EGPO, Nash Prox and MPO, through the gin entry point
(`python -m nlhf_jax.main`, the method's run file) on a finite-answer world
against the exact P*, on the 8 fake CPU devices (2x2x2 mesh), without the
exact-target evaluation (it does not touch the train state):

1. an uninterrupted reference run of STEPS steps, checkpointing every EVERY;
2. the same run in a second workdir, SIGKILLed once its first checkpoint is
   complete (no chance to clean up);
3. the same command again: it takes over the lease, resumes from the
   newest intact checkpoint and finishes.

The final train state of 3 (params, optimizer state, step, and the extra
state of the method: Nash Prox's π_k, MPO's magnet) must equal the
reference's bit for bit. The processes share a persistent compilation cache
so that only each method's first process compiles.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from nlhf_jax import checkpointing
from nlhf_jax import finite_worlds
from nlhf_jax import sweep

STEPS, EVERY = 12, 4
SETTINGS = finite_worlds.Settings(
    steps=STEPS, sft_steps=6, batch=8, eval_every=STEPS, judge_steps=4,
    d_model=16, layers=1, prox_inner_steps=3, mpo_refresh_every=3)
METHODS = {m.name: m for m in finite_worlds.METHODS}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def world_sft(tmp_path_factory):
  root = tmp_path_factory.mktemp("resume")
  sft_dir = str(root / "sft")
  sweep.run_experiment(finite_worlds.sft_run("majority", 0, sft_dir,
                                             SETTINGS))
  # XLA_FLAGS as conftest.py sets them: 8 devices and the quick compile.
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=str(root / "xla_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return root, sft_dir, env


def _command(method, workdir, sft_dir):
  run = finite_worlds.method_run(METHODS[method], "majority", 0, workdir,
                                 sft_dir, SETTINGS)
  return [sys.executable, "-m", "nlhf_jax.main", *run.argv(),
          "--gin_file=gin_configs/mesh/cpu8.gin",
          f"--gin.CHECKPOINT_EVERY={EVERY}",
          "--gin.online_job.online_job.evaluation=None"]


def _manifest(workdir, step):
  return os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR, str(step),
                      checkpointing.MANIFEST)


def _finish(command, env):
  proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout + proc.stderr


def _final_state(workdir):
  path = os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR, str(STEPS),
                      "state")
  return ocp.tree.to_flat_dict(ocp.PyTreeCheckpointer().restore(path))


@pytest.mark.parametrize("method", ["IPO-MD", "EGPO", "Prox", "MPO"])
def test_sigkill_then_resume_matches_uninterrupted(world_sft, method):
  root, sft_dir, env = world_sft
  reference = str(root / f"{method}_reference")
  _finish(_command(method, reference, sft_dir), env)

  workdir = str(root / f"{method}_killed")
  proc = subprocess.Popen(_command(method, workdir, sft_dir), cwd=REPO,
                          env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 600
  while not os.path.exists(_manifest(workdir, EVERY)):
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    assert time.time() < deadline, "timed out waiting for a checkpoint"
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGKILL
  assert not os.path.exists(_manifest(workdir, STEPS)), "killed too late"

  out = _finish(_command(method, workdir, sft_dir), env)
  assert "Taking over the lease" in out, out[-3000:]
  assert "Resumed from the checkpoint at step" in out, out[-3000:]
  want, got = _final_state(reference), _final_state(workdir)
  assert sorted(want) == sorted(got)
  extra = [k for k in want if "anchor_params" in "/".join(map(str, k))]
  assert bool(extra) == (method in ("Prox", "MPO")), sorted(want)[:5]
  for key in want:
    np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]),
                                  err_msg=str(key))
  assert int(np.asarray(got[("step",)])) == STEPS
