"""End-to-end process tests through the gin entry point (`nlhf_jax.main`).

One sequence of real processes running `gin_configs/runs/sft.gin` on a toy
copy task with a very small T5 on the 8 fake CPU devices (2x2x2 mesh;
tests/conftest.py `toy_sft`):

1. an uninterrupted reference run of 40 steps;
2. the same run in a second workdir, sent SIGTERM after its first
   checkpoint: it must save a checkpoint at the step it reached, print a
   message and exit with status 0;
3. the same command again: it resumes, and is SIGKILLed right after its
   next checkpoint (no chance to clean up);
4. the same command again: it resumes from the newest intact checkpoint and
   finishes.

The final train state (params, optimizer state, step) of 4 must equal the
reference bit for bit: both runs execute the same compiled program on the
same batches (the data position is checkpointed) with the same per-step RNG
fold_in(seed, step), and XLA on CPU is deterministic. The processes share a
persistent compilation cache so later processes skip compiling. The
SIGKILLed run leaves its workdir lease behind; run 4 takes it over.
"""

import os
import re
import signal
import time

import numpy as np
import orbax.checkpoint as ocp

from nlhf_jax import checkpointing

STEPS, EVERY = 40, 10


def _run(toy_sft, workdir):
  proc = toy_sft.run(workdir, steps=STEPS, every=EVERY)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _manifest(workdir, step):
  return os.path.join(workdir, "checkpoints", str(step),
                      checkpointing.MANIFEST)


def _start_and_wait(toy_sft, workdir, step):
  """Starts a run and returns it once checkpoint `step` is complete."""
  proc = toy_sft.start(workdir, steps=STEPS, every=EVERY)
  deadline = time.time() + 600
  while not os.path.exists(_manifest(workdir, step)):
    if proc.poll() is not None:
      raise AssertionError(f"Run ended before checkpoint {step}:\n"
                           f"{proc.stdout.read()[-3000:]}")
    assert time.time() < deadline, "timed out waiting for a checkpoint"
    time.sleep(0.02)
  return proc


def _final_state(workdir):
  path = os.path.join(workdir, "checkpoints", str(STEPS), "state")
  return ocp.PyTreeCheckpointer().restore(path)


def test_sigterm_then_sigkill_then_resume_matches_uninterrupted(toy_sft,
                                                               tmp_path):
  reference = str(tmp_path / "reference")
  _run(toy_sft, reference)

  workdir = str(tmp_path / "interrupted")
  proc = _start_and_wait(toy_sft, workdir, EVERY)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-3000:]
  match = re.search(r"Received SIGTERM: saved a checkpoint at step (\d+)",
                    out)
  assert match, out[-3000:]
  stopped = int(match.group(1))
  assert EVERY <= stopped < STEPS
  assert os.path.exists(_manifest(workdir, stopped))

  next_checkpoint = (stopped // EVERY + 1) * EVERY
  assert next_checkpoint < STEPS, "SIGTERM came too late to test SIGKILL"
  proc = _start_and_wait(toy_sft, workdir, next_checkpoint)
  proc.send_signal(signal.SIGKILL)
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGKILL
  assert f"Resumed from the checkpoint at step {stopped}" in out
  assert not os.path.exists(_manifest(workdir, STEPS))

  out = _run(toy_sft, workdir)
  assert re.search(r"Resumed from the checkpoint at step \d+", out), out
  assert "Taking over the lease" in out, out
  want, got = _final_state(reference), _final_state(workdir)
  flat_want = ocp.tree.to_flat_dict(want)
  flat_got = ocp.tree.to_flat_dict(got)
  assert sorted(flat_want) == sorted(flat_got)
  for key in flat_want:
    np.testing.assert_array_equal(np.asarray(flat_got[key]),
                                  np.asarray(flat_want[key]), err_msg=key)
  assert int(np.asarray(got["step"])) == STEPS
